"""Segmentation (region) losses on masks.

Two modes, told apart by shapes, never by values:
- binary: ``input`` ``(N, 1, H, W)`` logits (or ``(N, H, W)``) and a {0, 1} ``target`` of the same shape (or
  ``(N, H, W)`` for a ``(N, 1, H, W)`` input); the foreground probability is ``sigmoid(input)``.
- multiclass: ``input`` ``(N, C, H, W)`` logits with ``C > 1`` and a ``target`` of integer class indices ``(N, H, W)``
  (``ignore_index`` pixels are left out) or a float one-hot ``(N, C, H, W)``; probabilities are ``softmax`` over C.
Any number of spatial dimensions works. ``from_logits=False`` takes probabilities.

Soft counts per class: ``I = sum p g``, ``P = sum p``, ``G = sum g``, over the pixels of each image
(``per_image=True``) or of the whole batch (``per_image=False``, the default: it keeps classes absent from one image
from dominating). ``reduction='none'`` returns the per-class losses, ``(N, C)`` or ``(C,)``; ``mean``/``sum`` take
their (``weight``-weighted) mean or sum. Empty masks: with ``smooth > 0`` an empty target predicted empty scores
a perfect 1 (loss 0), as in MONAI with ``smooth_nr = smooth_dr``; ``smooth = 0`` leaves that case 0/0, guarded to 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import as_float, non_negative, positive, reduce, register
from .binary import bce
from .multiclass import ce

_SEG = dict(tasks=("segmentation",), input="logits", target="mask")


def _probs_and_one_hot(
    name: str, input: Tensor, target: Tensor, from_logits: bool, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(p, g, x)`` of shape ``(N, C, S)``: probabilities, one-hot target and the input itself; ignored pixels
    are zeroed in ``p`` and ``g``."""
    x = as_float(input)
    if x.ndim < 2:
        x = x.unsqueeze(1)
        target = target.unsqueeze(1) if target.ndim == 1 else target
    if x.shape[1] == 1:  # binary: (N, 1, ...)
        if target.shape == x.shape[:1] + x.shape[2:]:
            target = target.unsqueeze(1)
        if target.shape != x.shape:
            raise ValueError(
                f"loss '{name}': a binary input {tuple(x.shape)} needs a {{0, 1}} target of the same shape "
                f"(or without the channel axis), got {tuple(target.shape)}"
            )
        p, g = (torch.sigmoid(x) if from_logits else x), target.to(x.dtype)
    elif not target.is_floating_point() and target.shape == x.shape[:1] + x.shape[2:]:
        p = F.softmax(x, dim=1) if from_logits else x
        if ignore_index is None:
            g = F.one_hot(target, x.shape[1]).movedim(-1, 1).to(p.dtype)
        else:
            keep = target != ignore_index
            g = F.one_hot(torch.where(keep, target, torch.zeros_like(target)), x.shape[1]).movedim(-1, 1).to(p.dtype)
            mask = keep.unsqueeze(1).to(p.dtype)
            p, g = p * mask, g * mask
    elif target.is_floating_point() and target.shape == x.shape:
        p, g = (F.softmax(x, dim=1) if from_logits else x), target.to(x.dtype)
    else:
        raise ValueError(
            f"loss '{name}': expected input (N, 1, ...) with a same-shaped {{0, 1}} target, or input (N, C, ...) "
            f"with integer targets (N, ...) or one-hot targets (N, C, ...); got input {tuple(x.shape)} and "
            f"{target.dtype} target {tuple(target.shape)}"
        )
    n, c = x.shape[:2]
    return p.reshape(n, c, -1), g.reshape(n, c, -1), x.reshape(n, c, -1)


def _counts(p: Tensor, g: Tensor, per_image: bool) -> tuple[Tensor, Tensor, Tensor]:
    dims = (2,) if per_image else (0, 2)
    return (p * g).sum(dims), p.sum(dims), g.sum(dims)


def _class_reduce(loss: Tensor, reduction: str, weight: Tensor | None, include_background: bool) -> Tensor:
    if not include_background and loss.shape[-1] > 1:
        loss = loss[..., 1:]
        weight = None if weight is None else weight[1:]
    return reduce(loss, reduction, None if weight is None else weight.to(loss.dtype))


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return num / den.clamp_min(torch.finfo(num.dtype).tiny)


@register("dice", aliases=("soft_dice",), constraints={"smooth": non_negative()}, **_SEG)
def dice(
    input: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    per_image: bool = False,
    log: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Soft Dice loss ``1 - (2 I + smooth) / (P + G + smooth)`` per class (Milletari et al. 2016, squares not used).

    ``log=True`` gives ``-log(dice)`` (the log form of Wong et al. 2018). ``weight``: per-class weights of the
    class mean. ``include_background=False`` drops class 0 (multiclass only).
    """
    p, g, _ = _probs_and_one_hot("dice", input, target, from_logits, ignore_index)
    inter, psum, gsum = _counts(p, g, per_image)
    score = _ratio(2.0 * inter + smooth, psum + gsum + smooth)
    loss = -torch.log(score.clamp_min(1e-7)) if log else 1.0 - score
    return _class_reduce(loss, reduction, weight, include_background)


@register("jaccard", aliases=("iou", "soft_iou"), constraints={"smooth": non_negative()}, **_SEG)
def jaccard(
    input: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Soft Jaccard (IoU) loss ``1 - (I + smooth) / (P + G - I + smooth)`` per class (Rahman & Wang 2016)."""
    p, g, _ = _probs_and_one_hot("jaccard", input, target, from_logits, ignore_index)
    inter, psum, gsum = _counts(p, g, per_image)
    loss = 1.0 - _ratio(inter + smooth, psum + gsum - inter + smooth)
    return _class_reduce(loss, reduction, weight, include_background)


def _tversky_index(
    name: str, input: Tensor, target: Tensor, alpha: float, beta: float, smooth: float, per_image: bool,
    from_logits: bool, ignore_index: int | None,
) -> Tensor:
    p, g, _ = _probs_and_one_hot(name, input, target, from_logits, ignore_index)
    inter, psum, gsum = _counts(p, g, per_image)
    fp, fn = psum - inter, gsum - inter
    return _ratio(inter + smooth, inter + alpha * fp + beta * fn + smooth)


_TV = {"alpha": non_negative(), "beta": non_negative(), "smooth": non_negative()}


@register("tversky", constraints=_TV, **_SEG)
def tversky(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Tversky loss ``1 - (I + s) / (I + alpha FP + beta FN + s)`` (Salehi et al. 2017).

    Convention: ``alpha`` weighs false positives and ``beta`` false negatives, as in the paper (defaults 0.3/0.7
    favour recall); ``alpha = beta = 0.5`` is Dice, ``alpha = beta = 1`` is Jaccard.
    """
    ti = _tversky_index("tversky", input, target, alpha, beta, smooth, per_image, from_logits, ignore_index)
    return _class_reduce(1.0 - ti, reduction, weight, include_background)


@register("focal_tversky", constraints={**_TV, "gamma": positive()}, **_SEG)
def focal_tversky(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    smooth: float = 1.0,
    per_image: bool = False,
    from_logits: bool = True,
    include_background: bool = True,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal Tversky loss ``(1 - TI)**gamma`` (Abraham & Khan 2019).

    Convention: ``gamma`` is the exponent itself; the paper writes ``(1 - TI)**(1/gamma)`` with its gamma = 4/3, so
    our default 0.75 is the paper's setting. ``1 - TI`` is floored at 1e-7 so gradients stay finite for gamma < 1.
    """
    ti = _tversky_index("focal_tversky", input, target, alpha, beta, smooth, per_image, from_logits, ignore_index)
    return _class_reduce((1.0 - ti).clamp_min(1e-7) ** gamma, reduction, weight, include_background)


def _lovasz_grad(gt_sorted: Tensor) -> Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (Berman et al. 2018, Alg. 1)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jac = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jac = torch.cat([jac[:1], jac[1:] - jac[:-1]])
    return jac


def _lovasz_flat(errors: Tensor, fg: Tensor) -> Tensor:
    errors_sorted, order = torch.sort(errors, descending=True)
    return torch.dot(errors_sorted, _lovasz_grad(fg[order]))


@register("lovasz", aliases=("lovasz_hinge", "lovasz_softmax"), **_SEG)
def lovasz(
    input: Tensor,
    target: Tensor,
    *,
    per_image: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Lovasz loss (Berman et al. 2018): a convex surrogate of the Jaccard loss optimised directly.

    Binary masks: the Lovasz hinge on logits (errors ``1 - s * (2g - 1)``). Multiclass: the Lovasz-softmax on
    ``softmax(input)``, averaged over the classes present in the target (their ``classes='present'``). ``none``
    returns one value per image (``per_image``) or per class.
    """
    p, g, scores = _probs_and_one_hot("lovasz", input, target, True, ignore_index)
    binary = p.shape[1] == 1
    groups = range(p.shape[0]) if per_image else [slice(None)]
    values = []
    for n in groups:
        if binary:
            s, fg = scores[n].reshape(-1), g[n].reshape(-1)
            values.append(_lovasz_flat(F.relu(1.0 - s * (2.0 * fg - 1.0)), fg))
            continue
        pn, gn = p[n], g[n]
        if pn.ndim == 3:  # whole batch: (N, C, S) -> (C, N*S)
            pn, gn = pn.transpose(0, 1).flatten(1), gn.transpose(0, 1).flatten(1)
        present = [c for c in range(pn.shape[0]) if gn[c].sum() > 0]
        per_class = [_lovasz_flat((gn[c] - pn[c]).abs(), gn[c]) for c in present]
        values.append(torch.stack(per_class).mean() if per_class else pn.sum() * 0.0)
    return reduce(torch.stack(values), reduction)


@register(
    "dice_bce",
    constraints={"dice_weight": non_negative(), "bce_weight": non_negative()},
    parts=(dice, bce),  # smooth (dice) and pos_weight (bce) are checked as the parts check them
    **dict(_SEG, target="binary"),
)
def dice_bce(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    smooth: float = 1.0,
    pos_weight: Tensor | float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``dice_weight * dice + bce_weight * bce`` for binary masks (logits), both averaged; the compound loss Ma et
    al. (2021) found most robust across segmentation tasks. Only ``reduction='mean'`` (the terms have different
    shapes)."""
    if reduction != "mean":
        raise ValueError("loss 'dice_bce' supports reduction='mean' only")
    t = target.unsqueeze(1) if input.ndim == target.ndim + 1 else target
    return dice_weight * dice(input, t, smooth=smooth) + bce_weight * bce(input, t.to(as_float(input).dtype), pos_weight=pos_weight)


@register(
    "dice_ce",
    constraints={"dice_weight": non_negative(), "ce_weight": non_negative()},
    parts=(dice, ce),  # smooth (dice), weight and ignore_index (both) are checked as the parts check them
    **dict(_SEG, target="index"),
)
def dice_ce(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    smooth: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """``dice_weight * dice + ce_weight * ce`` for multiclass masks with integer targets; ``weight`` (per class) goes
    to both terms. Only ``reduction='mean'``."""
    if reduction != "mean":
        raise ValueError("loss 'dice_ce' supports reduction='mean' only")
    d = dice(input, target, smooth=smooth, weight=weight, ignore_index=ignore_index)
    return dice_weight * d + ce_weight * ce(input, target, weight=weight, ignore_index=ignore_index)
