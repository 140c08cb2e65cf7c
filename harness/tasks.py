"""Which task each dataset poses, and the metrics logged for it (names from DESIGN.md).

Metrics take the model's raw output: regression values ``(N,)``; binary scores ``(N,)`` (a logit, or a margin for
hinge losses: positive means class 1, and ``sigmoid`` of it is used as the score for ranking and log loss);
multiclass scores ``(N, C)`` (``softmax`` gives probabilities); segmentation scores ``(N, 1, H, W)`` (binary masks,
foreground where positive) or ``(N, C, H, W)`` (argmax).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import losses

DATA_TASKS: dict[str, str] = {
    "outliers": "regression",
    "imbalanced": "binary",
    "breast_cancer": "binary",
    "mnist": "multiclass",
    "fashion_mnist": "multiclass",
    "segmentation": "segmentation",
    "pets": "segmentation",
}

# Validation metric shown in the progress bar and returned to sweepers, and whether lower is better.
MONITOR: dict[str, tuple[str, bool]] = {
    "regression": ("rmse", True),
    "binary": ("pr_auc", False),
    "multiclass": ("accuracy", False),
    "segmentation": ("miou", False),
}


def trainable_losses() -> list[str]:
    """Registered losses that serve a task the harness trains (the GAN losses serve none); each has a
    ``conf/loss/<name>.yaml``."""
    return [n for n in losses.available() if set(losses.spec(n).tasks) & set(MONITOR)]


def task_of_data(name: str) -> str:
    if name not in DATA_TASKS:
        raise ValueError(f"data.name={name!r} is unknown; valid: {sorted(DATA_TASKS)}")
    return DATA_TASKS[name]


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """RMSE and MAE."""
    err = pred.double() - target.double()
    return {"rmse": err.square().mean().sqrt().item(), "mae": err.abs().mean().item()}


def binary_metrics(score: Tensor, target: Tensor) -> dict[str, float]:
    """PR-AUC (average precision), ROC-AUC, F1 and recall of the positive (minority) class at score 0, balanced
    accuracy, and log loss of ``sigmoid(score)``."""
    from sklearn import metrics as skm

    y = target.reshape(-1).cpu().numpy()
    s = score.reshape(-1).detach().double().cpu()
    prob = torch.sigmoid(s).clamp(1e-7, 1 - 1e-7).numpy()
    pred = (s > 0).numpy().astype(np.int64)
    both = len(np.unique(y)) == 2
    return {
        "pr_auc": float(skm.average_precision_score(y, prob)) if both else float("nan"),
        "roc_auc": float(skm.roc_auc_score(y, prob)) if both else float("nan"),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "recall_minority": float(skm.recall_score(y, pred, zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "log_loss": float(skm.log_loss(y, prob, labels=[0, 1])),
    }


def expected_calibration_error(prob: Tensor, target: Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): ``sum_b |B|/N * |acc(B) - conf(B)|``."""
    confidence, pred = prob.max(dim=1)
    correct = (pred == target).double()
    which = torch.clamp((confidence * bins).long(), max=bins - 1)
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct)
    conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidence.double())
    return float(((acc - conf).abs()).sum() / len(target))


def multiclass_metrics(score: Tensor, target: Tensor) -> dict[str, float]:
    """Accuracy, macro-F1, NLL of ``softmax(score)`` and expected calibration error."""
    from sklearn.metrics import f1_score

    s, y = score.detach().double().cpu(), target.cpu()
    prob = F.softmax(s, dim=1)
    pred = prob.argmax(dim=1)
    return {
        "accuracy": float((pred == y).double().mean()),
        "macro_f1": float(f1_score(y.numpy(), pred.numpy(), average="macro", labels=list(range(s.shape[1])), zero_division=0)),
        "nll": float(F.nll_loss(torch.log(prob.clamp_min(1e-12)), y)),
        "ece": expected_calibration_error(prob, y),
    }


def confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``num_classes x num_classes`` counts, rows = true class, columns = predicted class."""
    idx = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def segmentation_predictions(score: Tensor) -> Tensor:
    return (score[:, 0] > 0).long() if score.shape[1] == 1 else score.argmax(dim=1)


def segmentation_metrics(score: Tensor, target: Tensor, num_classes: int) -> dict[str, float]:
    """Mean IoU over classes present in prediction or truth, mean Dice over the foreground classes, pixel accuracy."""
    cm = confusion(segmentation_predictions(score), target, num_classes).double()
    tp = cm.diag()
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    union = tp + fp + fn
    iou = tp[union > 0] / union[union > 0]
    fg = torch.arange(num_classes) > 0
    dice_den = (2 * tp + fp + fn)[fg]
    dice = torch.where(dice_den > 0, 2 * tp[fg] / dice_den.clamp_min(1), torch.ones_like(dice_den))
    return {
        "miou": float(iou.mean()) if len(iou) else 1.0,
        "dice": float(dice.mean()),
        "pixel_accuracy": float(tp.sum() / cm.sum()),
    }


def metrics(task: str, output: Tensor, target: Tensor, num_classes: int | None = None) -> dict[str, float]:
    """Task metrics from raw model output on one split."""
    if task == "regression":
        return regression_metrics(output, target)
    if task == "binary":
        return binary_metrics(output, target)
    if task == "multiclass":
        return multiclass_metrics(output, target)
    if task == "segmentation":
        assert num_classes is not None
        return segmentation_metrics(output, target, num_classes)
    raise ValueError(f"no metrics for task {task!r}")


@torch.no_grad()
def predict(model: torch.nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Model output on ``x`` in eval mode, batched to bound memory; a single output column is squeezed to ``(N,)``."""
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    return out.squeeze(-1) if out.ndim == 2 and out.shape[1] == 1 else out
