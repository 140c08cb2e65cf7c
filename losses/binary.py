"""Binary classification losses.

``input`` holds one score per example (any shape, a trailing size-1 class axis included) and ``target`` the same
shape with values in {0, 1} (soft labels in [0, 1] are accepted by ``bce`` and ``focal``). Inputs are logits by
default and computed in log space; ``from_logits=False`` takes probabilities, clipped to ``[1e-7, 1 - 1e-7]`` as
Keras does. Multi-column (multiclass) input is refused: use ``ce`` for that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import as_float, check_reduction, check_same_shape, focal_factor, in_range, non_negative, optional, or_tensor, positive, reduce, register

_EPS = 1e-7
_BIN = dict(tasks=("binary", "segmentation"), input="logits", target="binary")


def _prepare(name: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if input.ndim >= 2 and input.shape[1] > 1 and input.shape != target.shape:
        raise ValueError(
            f"loss '{name}' is binary: expected one score per example, got input of shape {tuple(input.shape)} "
            f"({input.shape[1]} classes); use 'ce' for multiclass"
        )
    check_same_shape(name, input, target)
    input = as_float(input)
    return input, target.to(input.dtype)


def _ignore(target: Tensor, weight: Tensor | None, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Targets with ``ignore_index`` entries set to 0, and the weights that leave them out (0 there)."""
    if ignore_index is None:
        return target, weight
    keep = target != ignore_index
    target = torch.where(keep, target, torch.zeros_like(target))
    keep = keep.to(target.dtype)
    return target, keep if weight is None else keep * weight.to(target.dtype)


def _smooth(target: Tensor, label_smoothing: float) -> Tensor:
    """Keras binary label smoothing: ``y * (1 - s) + 0.5 * s``."""
    return target * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else target


_POS_WEIGHT = optional(or_tensor(positive()))


@register("bce", aliases=("binary_crossentropy",), constraints={"label_smoothing": in_range(0.0, 1.0), "pos_weight": _POS_WEIGHT}, **_BIN)
def bce(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = True,
    pos_weight: Tensor | float | None = None,
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy ``-[w_p y log p + (1 - y) log(1 - p)]`` with ``p = sigmoid(input)``.

    ``pos_weight`` (``w_p``) scales the positive term as in ``torch.nn.BCEWithLogitsLoss`` (``n_neg / n_pos``
    balances the classes). ``label_smoothing`` follows Keras: targets become ``y (1 - s) + 0.5 s``. ``ignore_index``:
    elements whose target equals it are left out (the mean is over the others), as on masks with a void label.
    """
    input, target = _prepare("bce", input, target)
    target, weight = _ignore(target, weight, ignore_index)
    target = _smooth(target, label_smoothing)
    if isinstance(pos_weight, (int, float)):
        pos_weight = torch.tensor(float(pos_weight), dtype=input.dtype, device=input.device)
    if from_logits:
        if weight is None:
            return F.binary_cross_entropy_with_logits(input, target, pos_weight=pos_weight, reduction=check_reduction(reduction))
        loss = F.binary_cross_entropy_with_logits(input, target, pos_weight=pos_weight, reduction="none")
    else:
        p = input.clamp(_EPS, 1.0 - _EPS)
        pos = target * torch.log(p)
        if pos_weight is not None:
            pos = pos * pos_weight
        loss = -(pos + (1.0 - target) * torch.log1p(-p))
    return reduce(loss, reduction, weight)


@register(
    "focal",
    aliases=("binary_focal", "sigmoid_focal"),
    constraints={"gamma": non_negative(), "alpha": optional(in_range(0.0, 1.0)), "label_smoothing": in_range(0.0, 1.0), "pos_weight": _POS_WEIGHT},
    binary_weight="alpha",  # class weights as Lin et al.'s alpha, not pos_weight
    **_BIN,
)
def focal(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    from_logits: bool = True,
    pos_weight: Tensor | float | None = None,
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary focal loss (Lin et al. 2017): ``-alpha_t (1 - p_t)**gamma log(p_t)``.

    ``p_t = p`` for positives and ``1 - p`` for negatives. Convention for ``alpha``: Lin et al. and
    ``torchvision.ops.sigmoid_focal_loss``: positives weighted by ``alpha``, negatives by ``1 - alpha`` (default
    0.25, the paper's choice with ``gamma = 2``); ``alpha=None`` applies no class weighting, which is Keras's
    ``BinaryFocalCrossentropy`` default (``apply_class_balancing=False``). The cross-entropy factor is computed
    from logits (log-sum-exp); ``1 - p_t`` is floored at 1e-12 before the power, so loss and gradients stay finite
    for saturated logits and for ``gamma < 1``. Side by side: torchvision's ``alpha=0.25`` default and ``alpha < 0``
    for none; smp ``FocalLoss`` ``alpha=None`` for none (its default) and ``alpha`` weighting positives, as ours;
    MONAI ``FocalLoss`` ``alpha=None`` (default) or ``alpha`` for positives. ``pos_weight`` scales the positive term
    as in ``bce`` (on top of ``alpha``); ``ignore_index`` leaves out elements whose target equals it.
    """
    input, target = _prepare("focal", input, target)
    target, weight = _ignore(target, weight, ignore_index)
    target = _smooth(target, label_smoothing)
    if isinstance(pos_weight, (int, float)):
        pos_weight = torch.tensor(float(pos_weight), dtype=input.dtype, device=input.device)
    if from_logits:
        p = torch.sigmoid(input)
        ce = F.binary_cross_entropy_with_logits(input, target, pos_weight=pos_weight, reduction="none")
    else:
        p = input.clamp(_EPS, 1.0 - _EPS)
        pos = target * torch.log(p) if pos_weight is None else pos_weight * target * torch.log(p)
        ce = -(pos + (1.0 - target) * torch.log1p(-p))
    loss = focal_factor(p + target - 2.0 * p * target, gamma) * ce if gamma else ce  # 1 - p_t = y(1-p) + (1-y)p
    if alpha is not None:
        loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    return reduce(loss, reduction, weight)


def _signed(target: Tensor) -> Tensor:
    """Keras: targets in {0, 1} become {-1, 1}; targets already in {-1, 1} are kept."""
    return torch.where(target == 0, -1.0, target)


@register("hinge", **dict(_BIN, tasks=("binary",)))
def hinge(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Hinge loss ``max(0, 1 - y * input)`` on raw scores, ``y`` in {-1, 1} (targets in {0, 1} are mapped, as Keras does)."""
    input, target = _prepare("hinge", input, target)
    return reduce(F.relu(1.0 - _signed(target) * input), reduction, weight)


@register("squared_hinge", **dict(_BIN, tasks=("binary",)))
def squared_hinge(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Squared hinge ``max(0, 1 - y * input)**2`` on raw scores, ``y`` in {-1, 1} (Keras ``SquaredHinge``)."""
    input, target = _prepare("squared_hinge", input, target)
    return reduce(F.relu(1.0 - _signed(target) * input).square(), reduction, weight)
