"""Multiclass losses for long-tailed class distributions: they take the training class counts (``class_counts``, one
per class), which the harness passes from the data as it passes class weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import Loss, as_float, check_reduction, in_range, positive, register
from .multiclass import _check_index_target


def _require_counts(name: str, class_counts: Tensor | list[float] | None, num_classes: int) -> Tensor | list[float]:
    if class_counts is None:
        raise ValueError(f"loss '{name}' needs class_counts (the training count of each class); the harness passes them")
    if len(class_counts) != num_classes:
        raise ValueError(f"loss '{name}': class_counts has {len(class_counts)} values for {num_classes} classes")
    return class_counts


def prior_log(name: str, class_counts: Tensor | list[float] | None, num_classes: int, like: Tensor) -> Tensor:
    """``log(n_c / sum n)`` shaped to broadcast over ``like`` (class axis 1); ``ValueError`` without counts."""
    counts = torch.as_tensor(_require_counts(name, class_counts, num_classes), dtype=like.dtype, device=like.device)
    counts = counts.clamp_min(1.0)  # a class absent from training gets the prior of one example, not log 0
    return torch.log(counts / counts.sum()).view(1, -1, *([1] * (like.ndim - 2)))


@register("logit_adjusted_ce", aliases=("balanced_softmax",), tasks=("multiclass",), input="logits", target="index")
def logit_adjusted_ce(
    input: Tensor,
    target: Tensor,
    *,
    class_counts: Tensor | None = None,
    tau: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Logit-adjusted cross-entropy ``CE(z + tau log prior, y)`` (Menon et al. 2021), ``prior`` the training class
    frequencies from ``class_counts``.

    ``tau = 1`` (the default) is Balanced Softmax (Ren et al. 2020): ``-log(n_y e^{z_y} / sum_j n_j e^{z_j})``. The
    adjustment is applied in training only; predictions use the raw logits ``z``, which then estimate the balanced
    (class-uniform) posterior. A class with no training example counts as one.
    """
    _check_index_target("logit_adjusted_ce", input, target)
    z = as_float(input)
    adjusted = z + tau * prior_log("logit_adjusted_ce", class_counts, z.shape[1], z)
    return F.cross_entropy(adjusted, target, weight=_weight(weight, z), ignore_index=ignore_index, reduction=check_reduction(reduction))


def effective_number_weights(class_counts: Tensor | list[float], beta: float) -> Tensor:
    """Class-balanced weights ``(1 - beta) / (1 - beta**n_c)`` normalised to sum to the number of classes (Cui et
    al. 2019's effective number of samples); a class with no example counts as one."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64).clamp_min(1.0)
    raw = (1.0 - beta) / (1.0 - beta**counts)
    return raw * len(counts) / raw.sum()


class ProgressLoss(Loss):
    """A loss whose arguments follow the training schedule: :meth:`start_epoch` (the trainer calls it before each
    epoch) sets ``progress``, the fraction of training done, ``(epoch - 1) / epochs``."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.params["progress"] = (epoch - 1) / max(epochs, 1)


@register(
    "ldam",
    constraints={
        "max_m": positive(), "s": positive(), "drw_start": in_range(0.0, 1.0),
        "cb_beta": in_range(0.0, 1.0, hi_open=True), "progress": in_range(0.0, 1.0),
    },
    base=ProgressLoss,
    tasks=("multiclass",),
    input="logits",
    target="index",
)
def ldam(
    input: Tensor,
    target: Tensor,
    *,
    class_counts: Tensor | None = None,
    max_m: float = 0.5,
    s: float = 30.0,
    drw: bool = False,
    drw_start: float = 0.8,
    cb_beta: float = 0.9999,
    progress: float = 0.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Label-distribution-aware margin loss ``CE(s (z - m_y e_y), y)`` (Cao et al. 2019).

    Margins ``m_j`` proportional to ``n_j**(-1/4)`` from ``class_counts``, scaled so the rarest class's is
    ``max_m``; ``s`` scales the logits (the paper's 30 goes with its normalised (cosine) classifier, logits in
    [-1, 1]; with a plain linear head a smaller ``s`` may train better). ``drw``: deferred re-weighting, the class-
    balanced weights of ``effective_number_weights(class_counts, cb_beta)`` applied once ``progress`` (the fraction
    of training done, which the module's :meth:`ProgressLoss.start_epoch` sets each epoch) reaches ``drw_start``
    (the paper: epoch 160 of 200, 0.8); until then, and without ``drw``, ``weight`` as given.
    """
    _check_index_target("ldam", input, target)
    z = as_float(input)
    counts = torch.as_tensor(_require_counts("ldam", class_counts, z.shape[1]), dtype=z.dtype, device=z.device).clamp_min(1.0)
    margins = counts.pow(-0.25)
    margins = margins * (max_m / margins.max())
    shape = (1, -1, *([1] * (z.ndim - 2)))
    kept = torch.where(target == ignore_index, torch.zeros_like(target), target)
    shifted = s * (z - F.one_hot(kept, z.shape[1]).movedim(-1, 1).to(z.dtype) * margins.view(shape))
    if drw and progress >= drw_start:
        weight = effective_number_weights(counts, cb_beta)
    return F.cross_entropy(shifted, target, weight=_weight(weight, z), ignore_index=ignore_index, reduction=check_reduction(reduction))


def _weight(weight: Tensor | list[float] | None, like: Tensor) -> Tensor | None:
    return None if weight is None else torch.as_tensor(weight, dtype=like.dtype, device=like.device)
