"""Masks as the region losses see them: the mode, the checked target, probabilities and soft counts per class.

Modes (smp's names), told apart by shapes where they can be, never by values:
- ``binary``: one score per pixel, ``input`` ``(N, 1, ...)`` with a target ``(N, 1, ...)`` or ``(N, ...)``; with
  ``mode='binary'`` also ``input`` ``(N, ...)`` with a same-shaped target. Probability ``sigmoid(input)``.
- ``multiclass``: ``input`` ``(N, C, ...)``, ``C > 1``, with integer class indices ``(N, ...)``, or (with
  ``mode='multiclass'``) a float one-hot or soft target ``(N, C, ...)``. Probabilities ``softmax`` over C.
- ``multilabel``: ``input`` ``(N, C, ...)`` with a same-shaped {0, 1} target; ``sigmoid`` per channel (MONAI's
  ``sigmoid=True``).
``mode=None`` infers binary from a single channel and multiclass from an integer target without the channel axis;
a same-shaped target with ``C > 1`` could be any of the three, so it needs ``mode``.

``ignore_index``: pixels (binary, multiclass) or elements (multilabel) whose target equals it are left out of every
count. ``check_target``: targets a mode cannot hold (binary/multilabel values outside [0, 1], class indices outside
``[0, C)``), other than ``ignore_index``, raise ``ValueError`` naming them; one reduction and one host sync per call,
``check_target=False`` skips it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import as_float, check_reduction, one_of, optional

MODES = ("binary", "multiclass", "multilabel")
AVERAGES = ("all", "present", "micro")
WEIGHT_NORMS = ("sum", "count")
MODE = optional(one_of(*MODES))
AVERAGE = one_of(*AVERAGES)
WEIGHT_NORM = one_of(*WEIGHT_NORMS)


@dataclass(frozen=True)
class Masks:
    """Flattened ``(N, C, S)`` tensors of one call: ``p`` probabilities (the input itself with ``from_logits=False``),
    ``g`` target (one-hot for multiclass index targets), ``x`` the input as given; ``p`` and ``g`` are zero at ignored pixels, where ``valid`` (broadcastable
    to ``(N, C, S)``, or ``None`` without ``ignore_index``) is zero. ``spatial``: the pixel grid ``S`` flattens."""

    mode: str
    p: Tensor
    g: Tensor
    x: Tensor
    valid: Tensor | None
    spatial: tuple[int, ...]


def infer_mode(name: str, input: Tensor, target: Tensor, mode: str | None) -> str:
    """``mode`` if given, else the mode the shapes imply; ``ValueError`` asking for ``mode`` where they do not."""
    if mode is not None:
        return mode
    if input.ndim < 2 or input.shape[1] == 1:
        return "binary"
    if target.shape == input.shape[:1] + input.shape[2:] and not target.is_floating_point():
        return "multiclass"
    if target.shape == input.shape:
        raise ValueError(
            f"loss '{name}': input {tuple(input.shape)} with a same-shaped target is ambiguous; pass mode='binary' "
            f"(one score per pixel, no channel axis), mode='multiclass' (one-hot target, softmax over C) or "
            f"mode='multilabel' (a {{0, 1}} mask per channel, sigmoid each)"
        )
    raise ValueError(
        f"loss '{name}': expected input (N, 1, ...) with a {{0, 1}} target (N, 1, ...) or (N, ...), or input "
        f"(N, C, ...) with integer class indices (N, ...); got input {tuple(input.shape)} and {target.dtype} target "
        f"{tuple(target.shape)}"
    )


def _check_values(name: str, mode: str, target: Tensor, hi: float, ignore_index: int | None) -> None:
    """One reduction (``aminmax``) and one host sync; the offending values are looked up only to raise."""
    low, high = torch.stack(target.aminmax()).tolist()
    if low < 0 or high > hi:
        values = torch.unique(target[(target < 0) | (target > hi)])[:8].tolist()
        allowed = f"class indices in [0, {int(hi)}]" if mode == "multiclass" else "values in [0, 1]"
        ignored = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
        raise ValueError(
            f"loss '{name}': {mode} targets must hold {allowed}{ignored}; got {values}. Set ignore_index for a "
            f"void label, or mode for another layout"
        )


def masks(
    name: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str | None,
    from_logits: bool,
    ignore_index: int | None,
    check_target: bool,
) -> Masks:
    """The :class:`Masks` of one call (see the module docstring for modes, ``ignore_index`` and ``check_target``)."""
    mode = infer_mode(name, input, target, mode)
    x = as_float(input)
    if mode == "binary":
        if x.ndim < 2 or x.shape[1] != 1:  # no channel axis: input and target (N, ...)
            if target.shape == x.shape:
                x, target = x.unsqueeze(1), target.unsqueeze(1)
        elif target.shape == x.shape[:1] + x.shape[2:]:
            target = target.unsqueeze(1)
        if target.shape != x.shape:
            raise ValueError(
                f"loss '{name}': binary mode needs input (N, 1, ...) with a target (N, 1, ...) or (N, ...), or "
                f"input and target of the same shape; got {tuple(input.shape)} and {tuple(target.shape)}"
            )
    elif x.ndim < 2 or x.shape[1] < 2:
        raise ValueError(f"loss '{name}': {mode} mode needs input (N, C, ...) with C > 1, got {tuple(x.shape)}")
    index = mode == "multiclass" and target.shape == x.shape[:1] + x.shape[2:]
    if mode == "multiclass" and not index and target.shape != x.shape:
        raise ValueError(
            f"loss '{name}': multiclass mode needs class indices {tuple(x.shape[:1] + x.shape[2:])} or a one-hot "
            f"target {tuple(x.shape)}, got {tuple(target.shape)}"
        )
    if mode == "multilabel" and target.shape != x.shape:
        raise ValueError(f"loss '{name}': multilabel mode needs a target of the input's shape {tuple(x.shape)}, got {tuple(target.shape)}")
    if index and target.is_floating_point():
        raise ValueError(f"loss '{name}': multiclass class indices must be integers, got {target.dtype}")
    if mode == "multiclass" and not index and ignore_index is not None:
        raise ValueError(f"loss '{name}': ignore_index applies to class-index targets; a one-hot target has none")
    valid = None
    if ignore_index is not None:
        valid = target != ignore_index
        target = target.where(valid, 0)
    if check_target:
        _check_values(name, mode, target, x.shape[1] - 1 if index else 1.0, ignore_index)
    n, c = x.shape[:2]
    if index:  # one-hot by one scatter, already zero at ignored pixels (class 0 gets `valid`, 0 there)
        valid = None if valid is None else valid.to(x.dtype).reshape(n, 1, -1)
        ones = torch.ones((), dtype=x.dtype, device=x.device).expand(n, 1, target[0].numel()) if valid is None else valid
        g = torch.zeros_like(x).reshape(n, c, -1).scatter(1, target.reshape(n, 1, -1).long(), ones)  # out of place: vmap batches it
    else:
        g = target.to(x.dtype).reshape(n, c, -1)
        if valid is not None:
            valid = valid.to(x.dtype).reshape(n, valid.shape[1], -1)
            g = g * valid
    if from_logits:
        p = F.softmax(x, dim=1) if mode == "multiclass" else torch.sigmoid(x)
    else:
        p = x
    p = p.reshape(n, c, -1)
    if valid is not None:
        p = p * valid
    return Masks(mode, p, g, x.reshape(n, c, -1), valid, tuple(x.shape[2:]))


def counts(m: Masks, per_image: bool, squared: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Soft counts ``(I, P, G) = (sum p g, sum p, sum g)`` per class, over each image's pixels (``(N, C)``) or the
    whole batch's (``(C,)``); ``squared`` sums ``p**2`` and ``g**2`` for ``P`` and ``G`` (Milletari's form)."""
    dims = (2,) if per_image else (0, 2)
    p, g = m.p, m.g
    inter = (p * g).sum(dims)
    if squared:
        return inter, (p * p).sum(dims), (g * g).sum(dims)
    return inter, p.sum(dims), g.sum(dims)


def micro(*per_class: Tensor, weight: Tensor | None) -> tuple[Tensor, ...]:
    """Counts pooled over classes (``weight``-weighted), keeping a class axis of size 1."""
    if weight is not None:
        per_class = tuple(t * weight.to(t.dtype) for t in per_class)
    return tuple(t.sum(-1, keepdim=True) for t in per_class)


def class_mean(
    loss: Tensor,
    reduction: str,
    *,
    weight: Tensor | None,
    present: Tensor | None,
    weight_norm: str,
) -> Tensor:
    """Reduce per-class losses ``(..., C)``: ``none`` returns them weighted (zero where a class is not ``present``);
    ``sum`` their weighted sum; ``mean`` their weighted mean over the present classes, normalised by the sum of
    their weights (``weight_norm='sum'``, as smp and ``F.cross_entropy``) or by their number (``'count'``, MONAI)."""
    check_reduction(reduction)
    w = None if weight is None else weight.to(loss.dtype).expand_as(loss)
    keep = None if present is None else present.to(loss.dtype).expand_as(loss)
    if keep is not None:
        loss = loss * keep
    weighted = loss if w is None else loss * w
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if w is not None and weight_norm == "sum":
        den = w.sum() if keep is None else (w * keep).sum()
    elif keep is not None:
        den = keep.sum()
    else:
        return weighted.mean()
    return weighted.sum() / den.clamp_min(torch.finfo(loss.dtype).tiny)


def select_classes(m: Masks, include_background: bool) -> Masks:
    """``m`` without class 0 when ``include_background`` is false and there is more than one class."""
    if include_background or m.p.shape[1] == 1:
        return m
    valid = m.valid if m.valid is None or m.valid.shape[1] == 1 else m.valid[:, 1:]
    return Masks(m.mode, m.p[:, 1:], m.g[:, 1:], m.x[:, 1:], valid, m.spatial)
