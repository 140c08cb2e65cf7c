"""Segmentation (region) losses on masks: Dice, Jaccard, Tversky, focal Tversky, generalized Dice and the compounds.

Modes, ``ignore_index`` and the target check are :mod:`losses._masks`'s: ``mode='binary' | 'multiclass' |
'multilabel'`` (inferred where the shapes are unambiguous), any number of spatial dimensions, ``from_logits=False``
takes probabilities.

Soft counts per class: ``I = sum p g``, ``P = sum p``, ``G = sum g`` (``squared=True``: ``sum p**2``, ``sum g**2``),
over the pixels of each image (``per_image=True``) or of the whole batch (``per_image=False``, the default: it keeps
classes absent from one image from dominating). Smoothing: ``smooth`` is added to numerator and denominator;
``smooth_nr`` / ``smooth_dr`` set them apart (MONAI's names). Averaging over classes (``average``): ``'all'`` (MONAI),
``'present'`` (classes with ``G > 0`` in the image or batch only; smp zeroes the others and divides by all ``C``,
which is ours with ``reduction='none'`` then ``.mean()``), or ``'micro'`` (counts pooled over classes first).
``weight``: per-class weights (length ``C``, class 0 included even with ``include_background=False``); the weighted
mean divides by the sum of the weights (``weight_norm='sum'``, smp) or by the number of terms (``'count'``, MONAI).
``reduction='none'`` returns the per-class losses, ``(N, C)`` or ``(C,)`` (``(N, 1)``/``(1,)`` with ``micro``).
Empty masks: with ``smooth > 0`` an empty target predicted empty scores a perfect 1 (loss 0), as MONAI with
``smooth_nr = smooth_dr``; ``smooth = 0`` leaves that case 0/0, guarded to a score of 0.

Compared with MONAI (``DiceLoss`` and kin): our ``per_image`` is MONAI's ``batch=False`` (MONAI's default; ours is
the batch), ``mode='multiclass'`` is ``softmax=True, to_onehot_y=True``, ``'binary'``/``'multilabel'`` are
``sigmoid=True``, MONAI's ``reduction='mean'`` is ours with ``weight_norm='count'``. Compared with smp: smp always
pools the batch (our default), adds ``smooth`` to both sides (ours for Jaccard and Tversky; ``2 smooth`` for Dice,
whose score it writes as ``(I + s) / ((P + G) / 2 + s)``) and averages as ``average='present'`` described above. ``tests/test_losses_peers.py`` checks each mapping against both libraries.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ._core import Loss, as_float, in_range, non_negative, one_of, optional, positive, register
from ._masks import AVERAGE, MODE, WEIGHT_NORM, Masks, class_mean, counts, infer_mode, masks, micro, select_classes
from .lovasz import lovasz  # noqa: F401  (a region loss too; its own module)
from .binary import bce, focal
from .multiclass import categorical_focal, ce

_SEG = dict(tasks=("segmentation",), input="logits", target="mask")
_REGION = {
    "smooth": non_negative(),
    "smooth_nr": optional(non_negative()),
    "smooth_dr": optional(non_negative()),
    "mode": MODE,
    "average": AVERAGE,
    "weight_norm": WEIGHT_NORM,
}


def _ratio(num: Tensor, den: Tensor, floor: bool = True) -> Tensor:
    """``num / den``, ``den`` floored at the dtype's tiny when ``floor`` (callers pass ``False`` where ``den >=
    smooth_dr > 0``: non-negative probabilities; the floor then costs two kernels per call on a GPU for nothing)."""
    return num / den.clamp_min(torch.finfo(num.dtype).tiny) if floor else num / den


def _floored(dr: float, from_logits: bool, weight: Tensor | None, average: str) -> bool:
    """Whether a score's denominator needs the floor: unless ``smooth_dr`` is at least float32's smallest normal
    number and every count is non-negative, which needs probabilities the loss computes (``from_logits``) and no class
    weights pooled into the counts (``average='micro'`` with ``weight``: weights are not checked to be non-negative)."""
    return dr < torch.finfo(torch.float32).tiny or not from_logits or (weight is not None and average == "micro")


def _weighted_sum(*terms: tuple[float, Tensor]) -> Tensor:
    """``sum(w * t)`` over ``(w, t)`` pairs, a weight of 1 not multiplied (bitwise the same, fewer kernels)."""
    parts = [t if w == 1 else w * t for w, t in terms]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _smoothing(smooth: float, smooth_nr: float | None, smooth_dr: float | None) -> tuple[float, float]:
    return (smooth if smooth_nr is None else smooth_nr), (smooth if smooth_dr is None else smooth_dr)


def _class_weight(weight: Tensor | None, m: Masks, num_classes: int) -> Tensor | None:
    """Per-class weights for the classes ``m`` keeps (class 0 dropped with the background)."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight)
    return weight[num_classes - m.p.shape[1]:] if weight.numel() == num_classes else weight


def _region(
    name: str,
    input: Tensor,
    target: Tensor,
    score,
    *,
    mode: str | None,
    from_logits: bool,
    per_image: bool,
    include_background: bool,
    average: str,
    weight: Tensor | None,
    weight_norm: str,
    ignore_index: int | None,
    check_target: bool,
    reduction: str,
    squared: bool = False,
) -> Tensor:
    """Per-class losses ``score(I, P, G)`` from the soft counts of one call, averaged over classes per ``average``."""
    full = masks(name, input, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index, check_target=check_target)
    m = select_classes(full, include_background)
    w = _class_weight(weight, m, full.p.shape[1])
    inter, psum, gsum = counts(m, per_image, squared)
    if average == "micro":
        inter, psum, gsum = micro(inter, psum, gsum, weight=w)
        w = None
    present = gsum > 0 if average == "present" else None
    return class_mean(score(inter, psum, gsum), reduction, weight=w, present=present, weight_norm=weight_norm)


@register("dice", aliases=("soft_dice",), constraints=_REGION, **_SEG)
def dice(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    squared: bool = False,
    per_image: bool = False,
    log: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Soft Dice loss ``1 - (2 I + smooth_nr) / (P + G + smooth_dr)`` per class (Milletari et al. 2016).

    ``squared=True`` uses ``P = sum p**2`` and ``G = sum g**2`` (Milletari's original; MONAI's ``squared_pred``).
    ``log=True`` gives ``-log(dice)`` (Wong et al. 2018; smp's ``log_loss``), the score floored at 1e-7 as smp's
    ``eps``. Compared with MONAI ``DiceLoss``: same ``smooth_nr``/``smooth_dr``. Compared with smp ``DiceLoss``:
    it computes ``(I + s) / ((P + G) / 2 + s)``, so its ``smooth=s`` is our ``smooth=2 s`` (its default 0, ours 1).
    """
    nr, dr = _smoothing(smooth, smooth_nr, smooth_dr)

    def score(inter: Tensor, psum: Tensor, gsum: Tensor) -> Tensor:
        s = _ratio(2.0 * inter + nr, psum + gsum + dr, _floored(dr, from_logits, weight, average))
        return -torch.log(s.clamp_min(1e-7)) if log else 1.0 - s

    return _region(
        "dice", input, target, score, mode=mode, from_logits=from_logits, per_image=per_image,
        include_background=include_background, average=average, weight=weight, weight_norm=weight_norm,
        ignore_index=ignore_index, check_target=check_target, reduction=reduction, squared=squared,
    )


@register("jaccard", aliases=("iou", "soft_iou"), constraints=_REGION, **_SEG)
def jaccard(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    squared: bool = False,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Soft Jaccard (IoU) loss ``1 - (I + smooth_nr) / (P + G - I + smooth_dr)`` per class (Rahman & Wang 2016).

    Compared with MONAI ``DiceLoss(jaccard=True)``: it computes ``(2 I + nr) / (2 (P + G - I) + dr)``, so ours with
    ``smooth_nr = nr / 2`` and ``smooth_dr = dr / 2``. Compared with smp ``JaccardLoss``: its ``smooth`` is ours.
    """
    nr, dr = _smoothing(smooth, smooth_nr, smooth_dr)
    return _region(
        "jaccard", input, target, lambda i, p, g: 1.0 - _ratio(i + nr, p + g - i + dr, _floored(dr, from_logits, weight, average)), mode=mode,
        from_logits=from_logits, per_image=per_image, include_background=include_background, average=average,
        weight=weight, weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
        reduction=reduction, squared=squared,
    )


_TV = {**_REGION, "alpha": non_negative(), "beta": non_negative()}


def _tversky_score(alpha: float, beta: float, nr: float, dr: float, floor: bool):
    def score(inter: Tensor, psum: Tensor, gsum: Tensor) -> Tensor:
        fp, fn = psum - inter, gsum - inter
        return _ratio(inter + nr, inter + alpha * fp + beta * fn + dr, floor)

    return score


@register("tversky", constraints=_TV, **_SEG)
def tversky(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Tversky loss ``1 - (I + nr) / (I + alpha FP + beta FN + dr)`` (Salehi et al. 2017).

    Convention: ``alpha`` weighs false positives and ``beta`` false negatives, as in the paper, MONAI and smp
    (defaults 0.3/0.7 favour recall; MONAI's and smp's are 0.5/0.5); ``alpha = beta = 0.5`` is Dice,
    ``alpha = beta = 1`` is Jaccard. MONAI ``TverskyLoss``'s ``smooth_nr``/``smooth_dr`` and smp's ``smooth`` are ours.
    """
    nr, dr = _smoothing(smooth, smooth_nr, smooth_dr)
    return _region(
        "tversky", input, target, lambda i, p, g: 1.0 - _tversky_score(alpha, beta, nr, dr, _floored(dr, from_logits, weight, average))(i, p, g), mode=mode,
        from_logits=from_logits, per_image=per_image, include_background=include_background, average=average,
        weight=weight, weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
        reduction=reduction,
    )


@register("focal_tversky", constraints={**_TV, "gamma": positive()}, **_SEG)
def focal_tversky(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Focal Tversky loss ``(1 - TI)**gamma`` per class (Abraham & Khan 2019).

    Convention: ``gamma`` is the exponent itself; the paper writes ``(1 - TI)**(1/gamma)`` with its gamma = 4/3, so
    our default 0.75 is the paper's setting. ``1 - TI`` is floored at 1e-7 so gradients stay finite for gamma < 1.
    smp ``TverskyLoss(gamma=...)`` raises the class mean to the power instead of each class's loss: the same for
    one class (binary mode). MONAI has no focal Tversky loss (its ``AsymmetricFocalTverskyLoss`` is another function).
    """
    nr, dr = _smoothing(smooth, smooth_nr, smooth_dr)
    ti = _tversky_score(alpha, beta, nr, dr, _floored(dr, from_logits, weight, average))
    return _region(
        "focal_tversky", input, target, lambda i, p, g: (1.0 - ti(i, p, g)).clamp_min(1e-7) ** gamma, mode=mode,
        from_logits=from_logits, per_image=per_image, include_background=include_background, average=average,
        weight=weight, weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
        reduction=reduction,
    )


_GD_WEIGHTS = ("square", "simple", "uniform")


@register(
    "generalized_dice",
    aliases=("gdl",),
    constraints={**{k: _REGION[k] for k in ("smooth", "smooth_nr", "smooth_dr", "mode")}, "weight_type": one_of(*_GD_WEIGHTS)},
    **_SEG,
)
def generalized_dice(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    weight_type: str = "square",
    smooth: float = 1e-5,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Generalized Dice loss ``1 - (2 sum_c w_c I_c + nr) / (sum_c w_c (P_c + G_c) + dr)`` (Sudre et al. 2017).

    ``weight_type``: ``w_c = 1 / G_c**2`` (``'square'``, the paper's), ``1 / G_c`` (``'simple'``) or 1
    (``'uniform'``), from the counts of the image (``per_image``) or the batch. A class absent there (``G_c = 0``,
    infinite weight) gets the largest finite weight instead, as MONAI ``GeneralizedDiceLoss`` does; with every class
    absent the weights are 0 and the loss is ``1 - nr / dr`` (0 with the default smoothing). Defaults follow MONAI
    (``smooth_nr = smooth_dr = 1e-5``); ``per_image=True`` is MONAI's ``batch=False``. ``reduction='none'`` returns
    one value per image, or ``(1,)`` for the batch.
    """
    nr, dr = _smoothing(smooth, smooth_nr, smooth_dr)
    m = select_classes(
        masks("generalized_dice", input, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index, check_target=check_target),
        include_background,
    )
    return class_mean(_generalized_dice(m, per_image, weight_type, nr, dr).reshape(-1), reduction, weight=None, present=None, weight_norm="sum")


def _generalized_dice(m: Masks, per_image: bool, weight_type: str, nr: float, dr: float) -> Tensor:
    """Generalized Dice loss of ``m``'s classes, ``(N, 1)`` per image or ``(1,)`` for the batch."""
    inter, psum, gsum = counts(m, per_image)
    if weight_type == "uniform":
        w = torch.ones_like(gsum)
    else:
        w = torch.reciprocal(gsum * gsum if weight_type == "square" else gsum)
        infinite = torch.isinf(w)  # an absent class: the largest finite weight
        w = w.masked_fill(infinite, 0.0)
        w = torch.where(infinite, w.amax(dim=-1, keepdim=True), w)
    return 1.0 - (2.0 * (w * inter).sum(-1, keepdim=True) + nr) / ((w * (psum + gsum)).sum(-1, keepdim=True) + dr)


# ---------------------------------------------------------------------------------------------------- compounds


def _channel_weight(weight: Tensor | None, like: Tensor) -> Tensor | None:
    """Per-class weights as per-element weights of a ``(N, C, ...)`` tensor."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=like.dtype, device=like.device)
    return weight.view(1, -1, *([1] * (like.ndim - 2))).expand_as(like)


def _sigmoid_layout(name: str, input: Tensor, target: Tensor, mode: str | None) -> tuple[Tensor, Tensor]:
    """Input and a same-shaped float target for a per-element (sigmoid) term: binary or multilabel masks only."""
    mode = infer_mode(name, input, target, mode)
    if mode == "multiclass":
        raise ValueError(f"loss '{name}' takes binary or multilabel masks; use 'dice_ce' or 'dice_focal' for class indices")
    x = as_float(input)
    channel = mode == "binary" and x.ndim >= 2 and x.shape[1] == 1 and target.ndim == x.ndim - 1
    return x, (target.unsqueeze(1) if channel else target).to(x.dtype)


@register(
    "dice_bce",
    constraints={"dice_weight": non_negative(), "bce_weight": non_negative()},
    parts=(dice, bce),  # the dice options and pos_weight / label_smoothing are checked as the parts check them
    **dict(_SEG, target="binary"),
)
def dice_bce(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    mode: str | None = None,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    squared: bool = False,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    pos_weight: Tensor | float | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """``dice_weight * dice + bce_weight * bce`` for binary or multilabel masks (Ma et al. 2021 found the compound
    the most robust across segmentation tasks); MONAI ``DiceCELoss(sigmoid=True)`` with ``lambda_dice``/``lambda_ce``
    for one channel. With ``C > 1`` channels MONAI's CE term is a softmax cross-entropy over the channels even with
    ``sigmoid=True``; ours stays a per-channel BCE (multilabel).

    Every ``dice`` option goes to the Dice term; ``weight`` (per class) to both terms (per channel for BCE);
    ``pos_weight`` and ``label_smoothing`` to the BCE term; ``ignore_index`` to both. Only ``reduction='mean'``
    (the terms have different shapes).
    """
    if reduction != "mean":
        raise ValueError("loss 'dice_bce' supports reduction='mean' only")
    d = dice(
        input, target, mode=mode, smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        per_image=per_image, from_logits=from_logits, include_background=include_background, average=average,
        weight=weight, weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
    )
    x, t = _sigmoid_layout("dice_bce", input, target, mode)
    b = bce(
        x, t, from_logits=from_logits, pos_weight=pos_weight, label_smoothing=label_smoothing,
        weight=_channel_weight(weight, x), ignore_index=ignore_index,
    )
    return _weighted_sum((dice_weight, d), (bce_weight, b))


@register(
    "dice_ce",
    constraints={"dice_weight": non_negative(), "ce_weight": non_negative()},
    parts=(dice, ce),  # the dice options, label_smoothing and weight are checked as the parts check them
    **dict(_SEG, target="index"),
)
def dice_ce(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    squared: bool = False,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """``dice_weight * dice + ce_weight * ce`` for multiclass masks with integer targets (MONAI ``DiceCELoss(softmax=
    True, to_onehot_y=True)`` with ``lambda_dice``/``lambda_ce``).

    Every ``dice`` option goes to the Dice term; ``weight`` (per class) to both terms; ``label_smoothing`` to the
    CE term; ``ignore_index`` (default -100, as ``ce``) to both. Only ``reduction='mean'``.
    """
    if reduction != "mean":
        raise ValueError("loss 'dice_ce' supports reduction='mean' only")
    d = dice(
        input, target, mode="multiclass", smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        per_image=per_image, from_logits=from_logits, include_background=include_background, average=average,
        weight=weight, weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
    )
    c = ce(
        input, target, from_logits=from_logits, weight=None if weight is None else torch.as_tensor(weight),
        label_smoothing=label_smoothing, ignore_index=ignore_index,
    )
    return _weighted_sum((dice_weight, d), (ce_weight, c))


@register(
    "dice_focal",
    constraints={"dice_weight": non_negative(), "focal_weight": non_negative(), "gamma": non_negative(), "alpha": optional(in_range(0.0, 1.0))},
    parts=(dice,),
    binary_weight="alpha",
    **_SEG,
)
def dice_focal(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    focal_weight: float = 1.0,
    gamma: float = 2.0,
    alpha: float | None = None,
    mode: str | None = None,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    squared: bool = False,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """``dice_weight * dice + focal_weight * focal`` (MONAI ``DiceFocalLoss`` with ``lambda_dice``/``lambda_focal``).

    The focal term matches the Dice term's activation: binary and multilabel masks get the sigmoid ``focal`` per
    element (``alpha`` weighs positives, ``1 - alpha`` negatives; ``None``, the default, as MONAI, weighs none);
    multiclass masks get the softmax ``categorical_focal`` (``alpha`` a constant factor). MONAI applies the sigmoid
    focal loss to the one-hot channels even with ``softmax=True``: that is ours with ``mode='multilabel'`` on a
    one-hot target for the focal term. ``weight`` (per class) goes to both terms. Only ``reduction='mean'``.
    """
    if reduction != "mean":
        raise ValueError("loss 'dice_focal' supports reduction='mean' only")
    d = dice(
        input, target, mode=mode, smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        per_image=per_image, from_logits=from_logits, include_background=include_background, average=average,
        weight=weight, weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
    )
    if infer_mode("dice_focal", input, target, mode) == "multiclass":
        if target.shape == input.shape:
            raise ValueError("loss 'dice_focal': multiclass mode takes class-index targets")
        f = categorical_focal(
            input, target, alpha=alpha, gamma=gamma, from_logits=from_logits, weight=None if weight is None else torch.as_tensor(weight),
            ignore_index=-100 if ignore_index is None else ignore_index,
        )
    else:
        x, t = _sigmoid_layout("dice_focal", input, target, mode)
        f = focal(x, t, alpha=alpha, gamma=gamma, from_logits=from_logits, weight=_channel_weight(weight, x), ignore_index=ignore_index)
    return _weighted_sum((dice_weight, d), (focal_weight, f))



# ----------------------------------------------------------------------------------------------- round 3 additions


@register("topk_ce", aliases=("topk",), constraints={"k": in_range(0.0, 100.0, lo_open=True)}, **dict(_SEG, target="index"))
def topk_ce(
    input: Tensor,
    target: Tensor,
    *,
    k: float = 10.0,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """TopK cross-entropy: the mean of the largest ``k`` percent of the per-pixel cross-entropies of the batch (Wu
    et al. 2016's bootstrapped CE; SegLoss's ``TopKLoss``, Ma et al. 2021, ``k = 10``).

    The count is ``ceil(k% of all pixels)``; ignored pixels have loss 0 and are chosen only when fewer pixels are
    kept than that (as SegLoss's). ``weight`` and ``label_smoothing`` go to the per-pixel CE. Only
    ``reduction='mean'`` (the chosen pixels change with every batch).
    """
    if reduction != "mean":
        raise ValueError("loss 'topk_ce' supports reduction='mean' only")
    per_pixel = ce(
        input, target, weight=None if weight is None else torch.as_tensor(weight), ignore_index=ignore_index,
        label_smoothing=label_smoothing, reduction="none",
    ).reshape(-1)
    count = max(1, math.ceil(per_pixel.numel() * k / 100.0))
    return per_pixel.topk(count, sorted=False).values.mean()


@register(
    "dice_topk",
    constraints={"dice_weight": non_negative(), "topk_weight": non_negative()},
    parts=(dice, topk_ce),
    **dict(_SEG, target="index"),
)
def dice_topk(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    topk_weight: float = 1.0,
    k: float = 10.0,
    smooth: float = 1.0,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    squared: bool = False,
    per_image: bool = False,
    include_background: bool = True,
    average: str = "all",
    weight: Tensor | None = None,
    weight_norm: str = "sum",
    ignore_index: int = -100,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """``dice_weight * dice + topk_weight * topk_ce`` for multiclass masks (DiceTopK, among the best compounds of
    Ma et al. 2021's SegLoss benchmark). Every ``dice`` option goes to the Dice term; ``weight`` and
    ``ignore_index`` to both. Only ``reduction='mean'``."""
    if reduction != "mean":
        raise ValueError("loss 'dice_topk' supports reduction='mean' only")
    d = dice(
        input, target, mode="multiclass", smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        per_image=per_image, include_background=include_background, average=average, weight=weight,
        weight_norm=weight_norm, ignore_index=ignore_index, check_target=check_target,
    )
    return _weighted_sum((dice_weight, d), (topk_weight, topk_ce(input, target, k=k, weight=weight, ignore_index=ignore_index)))


@register("mcc", aliases=("mcc_loss",), constraints={"eps": non_negative()}, **dict(_SEG, target="binary"))
def mcc(
    input: Tensor,
    target: Tensor,
    *,
    eps: float = 1e-5,
    per_image: bool = False,
    from_logits: bool = True,
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """``1 - MCC`` of the soft confusion counts of binary masks (Abhishek & Hamarneh 2021):
    ``MCC = (TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN))``, ``TP = sum p g``, ``TN = sum (1 - p)(1 -
    g)``, ... each plus ``eps``, over the batch (or per image). Compared with smp ``MCCLoss``: the same with
    ``per_image=False``, except that smp takes probabilities (ours ``from_logits=False``; by default ours applies
    the sigmoid). ``reduction='none'`` returns one value per image (``per_image``) or ``(1,)``.
    """
    m = masks("mcc", input, target, mode="binary", from_logits=from_logits, ignore_index=ignore_index, check_target=check_target)
    valid = 1.0 if m.valid is None else m.valid
    dims = (1, 2) if per_image else (0, 1, 2)
    tp = (m.p * m.g).sum(dims) + eps
    tn = ((valid - m.p) * (valid - m.g)).sum(dims) + eps
    fp = (m.p * (valid - m.g)).sum(dims) + eps
    fn = ((valid - m.p) * m.g).sum(dims) + eps
    score = (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return class_mean((1.0 - score).reshape(-1), reduction, weight=None, present=None, weight_norm="sum")


def distance_to_boundary(mask: Tensor) -> Tensor:
    """Euclidean distance of every pixel to the boundary of the {0, 1} ``mask`` ``(N, C, *spatial)``, per image and
    channel: inside, to the nearest background pixel; outside, to the nearest foreground one (scipy's
    ``distance_transform_edt`` on the host, without gradient). An all-background or all-foreground mask has no
    boundary: 0 everywhere (as MONAI)."""
    return _per_object(mask, lambda edt, fg: edt(fg) + edt(~fg))


def _per_object(mask: Tensor, field_of: Callable[..., Any]) -> Tensor:
    """``field_of(distance_transform_edt, fg)`` for each image and channel of the {0, 1} ``mask`` ``(N, C, ...)``
    that has both object and background (0 elsewhere); on the host, float32 on ``mask``'s device."""
    from scipy.ndimage import distance_transform_edt

    arr = (mask.detach() > 0.5).cpu().numpy()
    field = torch.zeros(arr.shape, dtype=torch.float32)
    for n in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            fg = arr[n, c]
            if fg.any() and not fg.all():
                field[n, c] = torch.from_numpy(field_of(distance_transform_edt, fg))
    return field.to(mask.device)


@register("hausdorff_dt", aliases=("hausdorff",), constraints={"alpha": positive(), "mode": MODE}, **_SEG)
def hausdorff_dt(
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None = None,
    alpha: float = 2.0,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = False,
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Distance-transform Hausdorff loss (Karimi & Salcudean 2019): the mean over pixels of ``(p - g)**2 (d_p**alpha
    + d_g**alpha)``, ``d_g`` and ``d_p`` the distances to the boundary of the target and of the prediction
    thresholded at 0.5 (:func:`distance_to_boundary`, recomputed on the host every call, without gradient).

    As MONAI ``HausdorffDTLoss`` (``alpha = 2``, ``include_background=False`` by default; ours per class then
    averaged, MONAI's ``batch=False`` is our ``per_image=True`` for ``reduction='none'``; the means agree). Costly:
    two Euclidean distance transforms per image and class on the CPU, and a host sync, at every step.
    ``reduction='none'``: per class ``(C,)``, or ``(N, C)`` per image.
    """
    m = select_classes(
        masks("hausdorff_dt", input, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index, check_target=check_target),
        include_background,
    )
    n, c = m.p.shape[:2]
    p, g = m.p.reshape(n, c, *m.spatial), m.g.reshape(n, c, *m.spatial)
    distance = distance_to_boundary(p).to(p.dtype) ** alpha + distance_to_boundary(g).to(p.dtype) ** alpha
    per_pixel = ((p - g).square() * distance).reshape(n, c, -1)
    dims = (2,) if per_image else (0, 2)
    return class_mean(per_pixel.mean(dims), reduction, weight=None, present=None, weight_norm="sum")


def signed_distance(mask: Tensor) -> Tensor:
    """Signed distance map of each channel of the {0, 1} ``mask`` ``(N, C, *spatial)`` (Kervadec et al.'s
    ``one_hot2dist``): outside the object, the Euclidean distance to the nearest object pixel; inside, minus the
    distance to the nearest background pixel, plus one (0 on the object's own edge pixels). A channel without object
    or without background is 0 everywhere. scipy's ``distance_transform_edt`` on the host, without gradient; float32
    on ``mask``'s device."""
    return _per_object(mask, lambda edt, fg: edt(~fg) * ~fg - (edt(fg) - 1.0) * fg)


class ScheduledLoss(Loss):
    """A loss whose weights follow the epoch: :meth:`start_epoch` (the trainer calls it before each epoch) sets
    ``epoch``; :meth:`learned` reports the weights in force, so each run logs them per epoch."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.params["epoch"] = epoch

    def learned(self) -> dict[str, float]:
        p = {**type(self).spec.params, **self.params}  # the function's defaults, then the fixed arguments
        region_weight, boundary_weight = boundary_weights(p["epoch"], p["start"], p["step"], p["floor"])
        return {"region_weight": region_weight, "boundary_weight": boundary_weight}


def boundary_weights(epoch: int, start: float, step: float, floor: float) -> tuple[float, float]:
    """(region, boundary) weights at ``epoch`` (1-based) of Kervadec et al.'s rebalancing schedule: the boundary
    weight starts at ``start`` and gains ``step`` per epoch; the region weight starts at 1 and loses ``step`` per epoch
    down to ``floor`` (their ``StealWeight`` scheduler, 0.01 / 0.01 / 0.1)."""
    done = epoch - 1
    return max(floor, 1.0 - step * done), start + step * done


@register(
    "boundary",
    aliases=("surface",),
    constraints={
        "mode": MODE, "region": one_of("generalized_dice", "dice"), "start": non_negative(), "step": non_negative(),
        "floor": in_range(0.0, 1.0), "epoch": positive(),
    },
    base=ScheduledLoss,
    **_SEG,
)
def boundary(
    input: Tensor,
    target: Tensor,
    *,
    distance: Tensor | None = None,
    mode: str | None = None,
    region: str = "generalized_dice",
    start: float = 0.01,
    step: float = 0.01,
    floor: float = 0.1,
    epoch: int = 1,
    include_background: bool = False,
    from_logits: bool = True,
    ignore_index: int | None = None,
    check_target: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """Boundary loss (Kervadec et al. 2019, 2021) with its region loss: ``w_R L_R + w_B mean(p * phi_G)``.

    ``phi_G``: ``distance``, the :func:`signed_distance` map of the target, in the masks' layout (``(N, 1, ...)``
    binary, ``(N, C, ...)`` otherwise); computed from ``target`` on the host at every call when not given (the harness
    computes each training mask's map once, before training). The boundary term averages ``p * phi_G`` over the
    pixels of the foreground channels (``include_background=False``, the paper's ``idc=[1]``; a binary mask's one
    channel). ``L_R``: ``region='generalized_dice'`` (the paper's, per image with the background: on a binary mask
    over the two channels ``1 - p`` and ``p``) or ``'dice'`` (:func:`dice`, defaults). Weights at ``epoch`` from
    :func:`boundary_weights` (``start``, ``step``, ``floor``; the module's epoch follows training, so the boundary
    weight is 0.01 + 0.01 (epoch - 1): on a short run it stays small; raise ``step`` to rebalance sooner).
    Void pixels (``ignore_index``) are left out of both terms. Only ``reduction='mean'``.
    """
    if reduction != "mean":
        raise ValueError("loss 'boundary' supports reduction='mean' only")
    m = masks("boundary", input, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index, check_target=check_target)
    n, c = m.p.shape[:2]
    if distance is None:
        distance = signed_distance(m.g.reshape(n, c, *m.spatial))
    if distance.shape[:2] != (n, c) or distance[0, 0].numel() != m.p.shape[2]:
        raise ValueError(
            f"loss 'boundary': distance must be the target's signed distance map {(n, c, *m.spatial)}, got {tuple(distance.shape)}"
        )
    region_weight, boundary_weight = boundary_weights(epoch, start, step, floor)
    fg = select_classes(m, include_background)
    phi = distance.reshape(n, c, -1).to(m.p.dtype)[:, c - fg.p.shape[1] :]
    kept = float(fg.p.numel()) if fg.valid is None else fg.valid.expand_as(fg.p).sum().clamp_min(1.0)
    surface = (fg.p * phi).sum() / kept
    if region == "dice":
        region_loss = dice(input, target, mode=m.mode, from_logits=from_logits, ignore_index=ignore_index, check_target=False)
    else:
        both = m
        if m.mode == "binary":
            valid = torch.ones_like(m.p) if m.valid is None else m.valid
            both = Masks(m.mode, torch.cat([valid - m.p, m.p], 1), torch.cat([valid - m.g, m.g], 1), m.x, m.valid, m.spatial)
        region_loss = _generalized_dice(both, True, "square", 1e-5, 1e-5).mean()
    return region_weight * region_loss + boundary_weight * surface
