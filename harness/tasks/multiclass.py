"""Multiclass classification: ``C`` scores per example (``softmax`` gives probabilities) against integer labels
for ``index`` losses or one-hot targets for ``one_hot`` losses."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..evaluation import Evaluation
from .base import Figures, Task, register
from .binary import confusion


def expected_calibration_error(prob: Tensor, target: Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): ``sum_b |B|/N * |acc(B) - conf(B)|``."""
    confidence, pred = prob.max(dim=1)
    correct = (pred == target).double()
    which = torch.clamp((confidence * bins).long(), max=bins - 1)
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct)
    conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidence.double())
    return float(((acc - conf).abs()).sum() / len(target))


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Float one-hot targets with the class axis second: ``(N,) -> (N, C)``, ``(N, H, W) -> (N, C, H, W)``."""
    return F.one_hot(labels, num_classes).movedim(-1, 1).float()


class Multiclass(Task):
    name = "multiclass"
    metrics = {"accuracy": False, "balanced_accuracy": False, "macro_f1": False, "nll": True, "ece": True}
    monitor = "accuracy"
    target_format = "index"
    target_formats = ("index", "one_hot")

    def num_outputs(self, spec: Any, num_classes: int | None) -> int:
        assert num_classes is not None
        return num_classes

    def gradient_groups(self, data: Any) -> dict[str, Tensor]:
        """Training examples whose label the harness flipped (``data.label_noise``: ``info['noisy_label_mask']``) and
        the others, for the image data sets (at ``label_noise=0``, none flipped: a study's clean condition)."""
        if "noisy_label_mask" not in data.info:
            return {}
        flipped = data.info["noisy_label_mask"].bool()
        return {"flipped": flipped, "clean": ~flipped}

    def prepare(self, output: Tensor, labels: Tensor, num_outputs: int, target_format: str) -> tuple[Tensor, Tensor]:
        return output, one_hot(labels, num_outputs) if target_format == "one_hot" else labels

    def compute(self, output: Tensor, target: Tensor, num_classes: int | None) -> dict[str, float]:
        """Accuracy, balanced accuracy (mean recall over the classes present in ``target``: what a long-tailed
        training set is judged by), macro-F1, NLL of ``softmax(score)`` and expected calibration error."""
        from sklearn.metrics import balanced_accuracy_score, f1_score

        self.check_host("metrics", output, target)
        s, y = output.detach().double(), target
        prob = F.softmax(s, dim=1)
        pred = prob.argmax(dim=1)
        return {
            "accuracy": float((pred == y).double().mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y.numpy(), pred.numpy())),
            "macro_f1": float(f1_score(y.numpy(), pred.numpy(), average="macro", labels=list(range(s.shape[1])), zero_division=0)),
            "nll": float(F.nll_loss(torch.log(prob.clamp_min(1e-12)), y)),
            "ece": expected_calibration_error(prob, y),
        }

    def figures(self, test: Evaluation, data: Any, evaluate: Callable[[str], Evaluation], title: str) -> Figures:
        from .. import plots

        classes = test.output.shape[1]
        return {
            "plots/confusion_matrix.png": plots.confusion_matrix(confusion(test.output.argmax(1), test.target, classes), title),
            "plots/reliability.png": plots.reliability_diagram(torch.softmax(test.output.double(), 1), test.target, title),
        }


TASK = register(Multiclass())
