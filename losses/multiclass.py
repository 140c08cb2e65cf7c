"""Multiclass losses on ``input`` of shape ``(N, C)`` or ``(N, C, d1, ...)`` (class axis 1, as in PyTorch).

Two target formats, never guessed: ``index`` losses take integer class indices of shape ``(N, d1, ...)`` and
accept ``weight`` (a per-class tensor) and ``ignore_index``; ``one_hot`` losses take float one-hot or soft targets
shaped like the input. Giving one the other's format raises a ``ValueError`` naming the loss to use instead.
Inputs are logits by default (``log_softmax`` inside); ``from_logits=False`` takes probabilities, normalised to sum
to 1 over the class axis and clipped to ``[1e-7, 1]`` as Keras does.

With ``weight``, index losses other than ``ce`` weight each element by ``weight[target]`` and ``mean`` divides by the
sum of those weights (``torch.nn.CrossEntropyLoss``'s convention); ignored elements count for nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import (
    Constraint,
    as_float,
    check_reduction,
    focal_factor,
    in_range,
    non_negative,
    optional,
    positive,
    reduce,
    register,
)

_EPS = 1e-7
_INDEX = dict(tasks=("multiclass", "segmentation"), input="logits", target="index")
_ONE_HOT = dict(tasks=("multiclass",), input="logits", target="one_hot")


def _check_index_target(name: str, input: Tensor, target: Tensor) -> None:
    if input.ndim < 2:
        raise ValueError(f"loss '{name}': input must be (N, C, ...) class scores, got shape {tuple(input.shape)}")
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if target.is_floating_point() or tuple(target.shape) != expected:
        raise ValueError(
            f"loss '{name}' expects integer class indices of shape {expected} for input of shape "
            f"{tuple(input.shape)}, got {target.dtype} target of shape {tuple(target.shape)}; "
            f"for one-hot or soft targets use 'categorical_ce'"
        )


def _check_one_hot_target(name: str, input: Tensor, target: Tensor) -> None:
    if not target.is_floating_point() or target.shape != input.shape:
        raise ValueError(
            f"loss '{name}' expects float one-hot or soft targets of shape {tuple(input.shape)}, got {target.dtype} "
            f"target of shape {tuple(target.shape)}; for integer class indices use 'ce'"
        )


def _log_probs(input: Tensor, from_logits: bool) -> Tensor:
    input = as_float(input)
    if from_logits:
        return F.log_softmax(input, dim=1)
    return torch.log((input / input.sum(dim=1, keepdim=True)).clamp(_EPS, 1.0))


def _index_setup(name: str, input: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """Validated target with ignored positions replaced by class 0, and the 0/1 mask of kept positions."""
    _check_index_target(name, input, target)
    keep = target != ignore_index
    return target.where(keep, 0), keep


def _index_reduce(
    loss: Tensor, target: Tensor, keep: Tensor, weight: Tensor | None, reduction: str
) -> Tensor:
    """Reduce per-position losses over the kept positions: ignored ones count for nothing, even where their loss is
    not finite (as ``F.cross_entropy``); ``mean`` is 0 when none is kept, and weighted by ``weight[target]`` if given."""
    kept = loss.where(keep, 0)
    if weight is None:  # a count, not a float mask: two kernels fewer per call on a GPU
        check_reduction(reduction)
        if reduction == "mean":
            return kept.sum() / keep.sum().clamp_min(1)
        return kept.sum() if reduction == "sum" else kept
    return reduce(kept, reduction, keep.to(loss.dtype) * weight.to(loss.dtype)[target])


def _gather(t: Tensor, target: Tensor) -> Tensor:
    return t.gather(1, target.unsqueeze(1)).squeeze(1)


def _smoothed_one_hot(target: Tensor, num_classes: int, label_smoothing: float, dtype: torch.dtype) -> Tensor:
    one_hot = F.one_hot(target, num_classes).movedim(-1, 1).to(dtype)
    return one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes if label_smoothing else one_hot


@register("ce", aliases=("cross_entropy", "sparse_categorical_crossentropy"), constraints={"label_smoothing": in_range(0.0, 1.0)}, **_INDEX)
def ce(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = True,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy with integer targets: exactly ``torch.nn.functional.cross_entropy``.

    Label smoothing mixes the one-hot target with the uniform distribution, ``(1 - s) y + s / C``, which is both
    PyTorch's and Keras's convention. ``from_logits=False`` takes probabilities (normalised and clipped as Keras).
    """
    check_reduction(reduction)
    _check_index_target("ce", input, target)
    logits = as_float(input) if from_logits else _log_probs(input, from_logits=False)
    if weight is not None:
        weight = weight.to(logits.dtype)
    return F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )


@register("categorical_ce", aliases=("categorical_crossentropy", "soft_ce"), constraints={"label_smoothing": in_range(0.0, 1.0)}, **_ONE_HOT)
def categorical_ce(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = True,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy ``-sum_c w_c y_c log p_c`` with one-hot or soft targets ``y`` (Keras ``CategoricalCrossentropy``).

    Label smoothing: ``(1 - s) y + s / C``. ``from_logits=False`` follows Keras: probabilities are first divided
    by their sum, so an unnormalised vector is accepted. ``weight`` (per class) scales each class's term; ``mean``
    is over examples (and positions), not over weights.
    """
    _check_one_hot_target("categorical_ce", input, target)
    logp = _log_probs(input, from_logits)
    y = target.to(logp.dtype)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / y.shape[1]
    terms = y * logp
    if weight is not None:
        terms = terms * weight.to(logp.dtype).view(1, -1, *([1] * (logp.ndim - 2)))
    return reduce(-terms.sum(dim=1), reduction)


_ALPHA = optional(
    Constraint(
        "a number in [0, 1], a list of per-class numbers in [0, 1], or null",
        lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1)
        or (isinstance(v, (list, tuple)) and all(isinstance(a, (int, float)) and 0 <= a <= 1 for a in v))
        or isinstance(v, Tensor),
    )
)


@register("categorical_focal", aliases=("softmax_focal",), constraints={"gamma": non_negative(), "alpha": _ALPHA}, **_INDEX)
def categorical_focal(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | list[float] | Tensor | None = 0.25,
    gamma: float = 2.0,
    from_logits: bool = True,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Softmax focal loss ``-alpha_y (1 - p_y)**gamma log p_y`` with integer targets.

    Convention for ``alpha``: Keras ``CategoricalFocalCrossentropy``: a scalar scales every class (default 0.25,
    as Keras; a constant factor), a per-class list or tensor weights class ``c`` by ``alpha[c]`` (pass class-balance
    weights here), ``None`` means 1. ``1 - p_y`` is floored at 1e-12 before the power, so the loss and its
    gradients are finite for saturated logits and ``gamma < 1``.
    """
    target, keep = _index_setup("categorical_focal", input, target, ignore_index)
    logp = _log_probs(input, from_logits)
    logp_y = _gather(logp, target)
    loss = -logp_y
    if gamma:
        loss = focal_factor(-torch.expm1(logp_y), gamma) * loss
    if isinstance(alpha, (list, tuple, Tensor)):
        loss = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)[target] * loss
    elif alpha is not None:
        loss = alpha * loss
    return _index_reduce(loss, target, keep, weight, reduction)


@register("categorical_hinge", **_ONE_HOT)
def categorical_hinge(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """Categorical hinge ``max(0, 1 + neg - pos)`` on raw scores, ``pos = sum(y * s)``, ``neg = max((1 - y) * s)``.

    Convention: Keras ``CategoricalHinge`` exactly, including its masking by multiplication: the true class enters
    ``neg`` as 0, so when every other score is negative the margin asks for ``pos >= 1`` (not ``pos >= 1 + max
    other``). Kept for agreement with Keras; ``multi_margin`` is the masked (Weston-Watkins) alternative.
    """
    _check_one_hot_target("categorical_hinge", input, target)
    s, y = as_float(input), target.to(as_float(input).dtype)
    pos = (y * s).sum(dim=1)
    neg = ((1.0 - y) * s).amax(dim=1)
    return reduce(F.relu(1.0 + neg - pos), reduction)


@register("multi_margin", aliases=("multiclass_hinge",), constraints={"margin": positive(), "p": Constraint("1 or 2", lambda v: v in (1, 2))}, **dict(_INDEX, tasks=("multiclass",)))
def multi_margin(
    input: Tensor,
    target: Tensor,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Multiclass hinge (Weston-Watkins): ``sum_{c != y} max(0, margin - s_y + s_c)**p / C``, exactly
    ``torch.nn.MultiMarginLoss`` (``weight[y]`` scales an example's loss; ``mean`` is over examples)."""
    check_reduction(reduction)
    _check_index_target("multi_margin", input, target)
    if input.ndim != 2:
        raise ValueError(f"loss 'multi_margin': input must be (N, C), got shape {tuple(input.shape)}")
    s = as_float(input)
    return F.multi_margin_loss(s, target, p=p, margin=margin, weight=None if weight is None else weight.to(s.dtype), reduction=reduction)


@register("kl_div", aliases=("kld", "kl_divergence"), **_ONE_HOT)
def kl_div(input: Tensor, target: Tensor, *, from_logits: bool = True, reduction: str = "mean") -> Tensor:
    """KL divergence ``sum_c y_c (log y_c - log p_c)`` of the predicted distribution from the target one.

    Summed over the class axis (dim 1), then averaged over every other position: for ``(N, C)`` inputs that is
    ``torch``'s ``batchmean`` (sum / N); for ``(N, C, d...)`` it is sum / (N * d...), Keras ``KLDivergence``'s mean
    over examples and positions (``batchmean`` would divide by N only). ``0 log 0 = 0``. ``from_logits=False``
    follows Keras: both distributions clipped to ``[1e-7, 1]``.
    """
    _check_one_hot_target("kl_div", input, target)
    y = target.to(as_float(input).dtype)
    if from_logits:
        terms = torch.xlogy(y, y) - y * F.log_softmax(as_float(input), dim=1)
    else:
        y = y.clamp(_EPS, 1.0)
        terms = y * (torch.log(y) - torch.log(as_float(input).clamp(_EPS, 1.0)))
    return reduce(terms.sum(dim=1), reduction)


@register("cosine_similarity", aliases=("cosine",), **_ONE_HOT)
def cosine_similarity(input: Tensor, target: Tensor, *, from_logits: bool = True, reduction: str = "mean") -> Tensor:
    """Negative cosine similarity ``-<p, y> / (|p| |y|)`` over the class axis (Keras ``CosineSimilarity``: -1 is
    best). With ``from_logits=True`` it compares ``softmax(input)``; else ``input`` as given."""
    _check_one_hot_target("cosine_similarity", input, target)
    p = F.softmax(as_float(input), dim=1) if from_logits else as_float(input)
    y = target.to(p.dtype)
    return reduce(-(F.normalize(p, dim=1, eps=1e-12) * F.normalize(y, dim=1, eps=1e-12)).sum(dim=1), reduction)


@register("poly1", aliases=("poly_loss",), constraints={"label_smoothing": in_range(0.0, 1.0)}, **_INDEX)
def poly1(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Poly-1 loss (Leng et al. 2022): ``CE + epsilon (1 - p_t)``, with ``p_t = <y_smoothed, softmax(input)>``."""
    target, keep = _index_setup("poly1", input, target, ignore_index)
    logp = _log_probs(input, from_logits=True)
    if not label_smoothing:  # one-hot y: CE = -log p_y and p_t = p_y
        logp_y = _gather(logp, target)
        return _index_reduce(-logp_y - epsilon * torch.expm1(logp_y), target, keep, weight, reduction)
    y = _smoothed_one_hot(target, logp.shape[1], label_smoothing, logp.dtype)
    ce_terms = -(y * logp).sum(dim=1)
    pt = (y * logp.exp()).sum(dim=1)
    return _index_reduce(ce_terms + epsilon * (1.0 - pt), target, keep, weight, reduction)


@register("softmax_mse", aliases=("expectation_l2",), **dict(_INDEX, tasks=("multiclass",)))
def softmax_mse(
    input: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Squared error between ``softmax(input)`` and the one-hot target, summed over classes (the L2 / Brier loss
    of Janocha & Czarnecki 2017). Bounded, so a mislabelled example has bounded influence."""
    target, keep = _index_setup("softmax_mse", input, target, ignore_index)
    p = F.softmax(as_float(input), dim=1)
    squared_error = torch.add(p.square().sum(dim=1), _gather(p, target), alpha=-2.0) + 1.0  # sum_c (p_c - y_c)^2, y one-hot
    return _index_reduce(squared_error, target, keep, weight, reduction)


@register("softmax_mae", aliases=("expectation_l1",), **dict(_INDEX, tasks=("multiclass",)))
def softmax_mae(
    input: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Absolute error between ``softmax(input)`` and the one-hot target, summed over classes (Janocha & Czarnecki
    2017); equals ``2 (1 - p_y)``, the MAE that Ghosh et al. (2017) show is robust to symmetric label noise."""
    target, keep = _index_setup("softmax_mae", input, target, ignore_index)
    logp_y = _gather(_log_probs(input, from_logits=True), target)
    return _index_reduce(-2.0 * torch.expm1(logp_y), target, keep, weight, reduction)  # sum_c |p_c - y_c| = 2 (1 - p_y)


@register("generalized_ce", aliases=("gce",), constraints={"q": in_range(0.0, 1.0, lo_open=True)}, **dict(_INDEX, tasks=("multiclass",)))
def generalized_ce(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Generalized cross-entropy (Zhang & Sabuncu 2018): ``(1 - p_y**q) / q``; ``q -> 0`` is CE, ``q = 1`` is
    ``1 - p_y`` (MAE-like). Default ``q = 0.7``, the paper's choice for noisy labels."""
    target, keep = _index_setup("generalized_ce", input, target, ignore_index)
    logp_y = _gather(_log_probs(input, from_logits=True), target)
    return _index_reduce(torch.expm1(q * logp_y) / -q, target, keep, weight, reduction)  # = -expm1 / q, bitwise


@register("symmetric_ce", aliases=("sce",), constraints={"alpha": non_negative(), "beta": non_negative()}, **dict(_INDEX, tasks=("multiclass",)))
def symmetric_ce(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Symmetric cross-entropy (Wang et al. 2019): ``alpha CE + beta RCE`` with reverse CE ``RCE = -log_zero (1 -
    p_y)`` (``log 0`` of the one-hot label taken as ``log_zero = -4``). Defaults: the paper's CIFAR-10 values."""
    target, keep = _index_setup("symmetric_ce", input, target, ignore_index)
    logp_y = _gather(_log_probs(input, from_logits=True), target)
    loss = alpha * -logp_y + beta * -log_zero * (1.0 - logp_y.exp())
    return _index_reduce(loss, target, keep, weight, reduction)
