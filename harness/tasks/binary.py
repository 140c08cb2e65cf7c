"""Binary classification: one score per example (a logit, or a margin for hinge losses: positive means class 1,
and ``sigmoid`` of it is the score used for ranking and log loss) against float {0, 1} targets ``(N, 1)``."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..evaluation import Evaluation, evaluate
from .base import Figures, Task, register


def confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``num_classes x num_classes`` counts, rows = true class, columns = predicted class."""
    idx = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def binary_target(output: Tensor, labels: Tensor) -> Tensor:
    """{0, 1} labels ``(N, ...)`` as float targets ``(N, 1, ...)`` of the output's dtype."""
    return labels.unsqueeze(1).to(output.dtype if output.is_floating_point() else torch.float32)


def f1_threshold(score: Tensor, target: Tensor) -> float:
    """The score threshold ``t`` whose predictions ``score >= t`` have the highest F1 for ``target`` in {0, 1} (the
    lowest such ``t`` on ties); 0 when ``target`` has no positives."""
    from sklearn.metrics import precision_recall_curve

    y = target.numpy()
    if not y.any():
        return 0.0
    precision, recall, thresholds = precision_recall_curve(y, score.double().numpy())
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


class Binary(Task):
    name = "binary"
    metrics = {"pr_auc": False, "roc_auc": False, "f1": False, "recall_minority": False, "precision": False,
               "balanced_accuracy": False, "log_loss": True, "tuned_f1": False, "tuned_recall": False, "tuned_precision": False}
    monitor = "pr_auc"
    target_format = "binary"
    target_formats = ("binary",)

    def classes_in_config(self, data_cfg: Any) -> int | None:
        return 2

    def gradient_groups(self, data: Any) -> dict[str, Tensor]:
        """Positive and negative training examples."""
        positive = data.train.y.reshape(len(data.train.y), -1)[:, 0] == 1
        return {"positives": positive, "negatives": ~positive}

    def prepare(self, output: Tensor, labels: Tensor, num_outputs: int, target_format: str) -> tuple[Tensor, Tensor]:
        return output, binary_target(output, labels)

    def compute(self, output: Tensor, target: Tensor, num_classes: int | None) -> dict[str, float]:
        """PR-AUC (average precision), ROC-AUC, F1, recall and precision of the positive (minority) class at score 0,
        balanced accuracy, and log loss of ``sigmoid(score)``."""
        from sklearn import metrics as skm

        self.check_host("metrics", output, target)
        y = target.reshape(-1).numpy()
        s = output.reshape(-1).detach().double()
        prob = torch.sigmoid(s).clamp(1e-7, 1 - 1e-7).numpy()
        pred = (s > 0).numpy().astype(np.int64)
        both = len(np.unique(y)) == 2
        return {
            "pr_auc": float(skm.average_precision_score(y, prob)) if both else float("nan"),
            "roc_auc": float(skm.roc_auc_score(y, prob)) if both else float("nan"),
            "f1": float(skm.f1_score(y, pred, zero_division=0)),
            "recall_minority": float(skm.recall_score(y, pred, zero_division=0)),
            "precision": float(skm.precision_score(y, pred, zero_division=0)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
            "log_loss": float(skm.log_loss(y, prob, labels=[0, 1])),
        }

    def test_metrics(self, evaluation: Evaluation, data: Any, model: Any) -> dict[str, float]:
        """:meth:`score`'s metrics at score 0, plus F1, recall and precision at the score threshold that maximises F1
        on the validation split (``tuned_*``; the threshold itself as ``tuned_threshold``): what a practitioner
        who picks the threshold on held-out data would get, whatever scale the loss gives the scores."""
        from sklearn import metrics as skm

        result = self.score(evaluation, data)
        device = next(model.parameters()).device
        val = evaluate(model, data.val.x.to(device), data.val.y.to(device))
        threshold = f1_threshold(val.output.reshape(-1), val.target.reshape(-1))
        y = evaluation.target.reshape(-1).numpy()
        pred = (evaluation.output.reshape(-1) >= threshold).numpy().astype(np.int64)
        result.update(tuned_f1=float(skm.f1_score(y, pred, zero_division=0)),
                      tuned_recall=float(skm.recall_score(y, pred, zero_division=0)),
                      tuned_precision=float(skm.precision_score(y, pred, zero_division=0)), tuned_threshold=threshold)
        return result

    def figures(self, test: Evaluation, data: Any, evaluate: Callable[[str], Evaluation], title: str) -> Figures:
        from .. import plots

        return {
            "plots/pr_curve.png": plots.pr_curve(test.output, test.target, title),
            "plots/confusion_matrix.png": plots.confusion_matrix(confusion((test.output > 0).long(), test.target, 2), title),
        }


TASK = register(Binary())
