"""Multiclass losses for noisy labels (integer targets, class axis 1): active-passive pairs, asymmetric GCE, soft
bootstrapping. Inputs are logits; ``weight`` and ``ignore_index`` follow :mod:`losses.multiclass` (a per-class weight
by target, the mean over the sum of weights; ignored positions count for nothing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import focal_factor, in_range, non_negative, positive, register
from .multiclass import _gather, _index_reduce, _index_setup, _log_probs

_NOISY = dict(tasks=("multiclass",), input="logits", target="index")
_APL = {"alpha": non_negative(), "beta": non_negative()}


def _reverse_ce(logp: Tensor, logp_y: Tensor, log_zero: float) -> Tensor:
    """Reverse cross-entropy ``-sum_k p_k log q_k`` against the one-hot label ``q`` with ``log 0 := log_zero``:
    ``-log_zero (1 - p_y)``."""
    return -log_zero * (1.0 - logp_y.exp())


@register("nce_rce", constraints=_APL, **_NOISY)
def nce_rce(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 10.0,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Active-passive loss NCE + RCE (Ma et al. 2020): ``alpha NCE + beta RCE``.

    ``NCE = log p_y / sum_k log p_k`` (cross-entropy normalised over all labels, in (0, 1]) and ``RCE = -log_zero
    (1 - p_y)`` (reverse cross-entropy, ``log 0 := log_zero``). Defaults: the authors' MNIST configuration
    (``alpha = 1``, ``beta = 10``) and the paper's ``A = log 0 = -4`` (as our ``symmetric_ce``); their released code
    clamps the one-hot label at 1e-4, i.e. ``log_zero = log(1e-4) = -9.21``, which weighs RCE 2.3x more.
    """
    target, keep = _index_setup("nce_rce", input, target, ignore_index)
    logp = _log_probs(input, from_logits=True)
    logp_y = _gather(logp, target)
    nce = logp_y / logp.sum(dim=1)
    return _index_reduce(alpha * nce + beta * _reverse_ce(logp, logp_y, log_zero), target, keep, weight, reduction)


@register("nfl_rce", constraints={**_APL, "gamma": non_negative()}, **_NOISY)
def nfl_rce(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 10.0,
    gamma: float = 0.5,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Active-passive loss NFL + RCE (Ma et al. 2020): ``alpha NFL + beta RCE``.

    ``NFL = FL_y / sum_k FL_k`` with ``FL_k = -(1 - p_k)**gamma log p_k`` (the focal loss normalised over all
    labels) and ``RCE`` as in ``nce_rce``. Defaults: the authors' MNIST configuration (``alpha = 1``, ``beta = 10``,
    ``gamma = 0.5``), ``log_zero = -4`` (the paper's). Gradients follow the formula; the authors' code computes the
    normaliser and ``p_y`` of the focal factor without gradient (same values, other gradients).
    """
    target, keep = _index_setup("nfl_rce", input, target, ignore_index)
    logp = _log_probs(input, from_logits=True)
    focal_terms = -focal_factor(-torch.expm1(logp), gamma) * logp if gamma else -logp
    nfl = _gather(focal_terms, target) / focal_terms.sum(dim=1)
    logp_y = _gather(logp, target)
    return _index_reduce(alpha * nfl + beta * _reverse_ce(logp, logp_y, log_zero), target, keep, weight, reduction)


@register("agce", aliases=("asymmetric_gce",), constraints={"a": positive(), "q": positive()}, **_NOISY)
def agce(
    input: Tensor,
    target: Tensor,
    *,
    a: float = 4.0,
    q: float = 0.2,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Asymmetric generalized cross-entropy ``((a + 1)**q - (a + p_y)**q) / q`` (Zhou et al. 2021).

    Defaults: the authors' MNIST setting (``a = 4``, ``q = 0.2``). It is 0 at ``p_y = 1`` and bounded by
    ``((a + 1)**q - a**q) / q``; asymmetric (robust to label noise) for the ``a``, ``q`` the paper characterises.
    """
    target, keep = _index_setup("agce", input, target, ignore_index)
    p_y = _gather(_log_probs(input, from_logits=True), target).exp()
    loss = ((a + 1.0) ** q - (a + p_y) ** q) / q
    return _index_reduce(loss, target, keep, weight, reduction)


@register("bootstrap_ce", aliases=("soft_bootstrap",), constraints={"beta": in_range(0.0, 1.0)}, **_NOISY)
def bootstrap_ce(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = 0.95,
    detach: bool = True,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Soft bootstrapping (Reed et al. 2015): ``-sum_k (beta y_k + (1 - beta) p_k) log p_k``.

    Convention: the model's own prediction in the target, ``p`` on the left, is taken without gradient
    (``detach=True``: a target is a constant of each step, as in most implementations); ``detach=False``
    differentiates it too, making the ``(1 - beta)`` term an entropy penalty that pushes ``p`` to be confident (the
    paper's equivalence to minimum-entropy regularisation). ``beta = 0.95``: the paper's soft setting; ``beta = 1``
    is ``ce``.
    """
    target, keep = _index_setup("bootstrap_ce", input, target, ignore_index)
    logp = _log_probs(input, from_logits=True)
    p = logp.exp()
    soft = (1.0 - beta) * (-((p.detach() if detach else p) * logp).sum(dim=1))
    loss = beta * -_gather(logp, target) + soft
    return _index_reduce(loss, target, keep, weight, reduction)


@register("forward_corrected_ce", aliases=("forward_correction",), **_NOISY)
def forward_corrected_ce(
    input: Tensor,
    target: Tensor,
    *,
    noise_matrix: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Forward-corrected cross-entropy ``-log((T^T p)_y)`` (Patrini et al. 2017): the model's clean posterior ``p``
    pushed through the noise matrix ``T`` (``T[i, j] = P(noisy label j | true class i)``, rows summing to 1) is
    fitted to the noisy labels; predictions stay ``p``. Computed in log space (``logsumexp`` of ``log p + log T``).

    ``noise_matrix`` is required; the harness passes the one it injected with ``data.label_noise`` (uniform flips:
    ``1 - eta`` on the diagonal, ``eta / (C - 1)`` elsewhere), so a study can show what knowing the noise gives.
    """
    if noise_matrix is None:
        raise ValueError("loss 'forward_corrected_ce' needs noise_matrix (C x C, T[i, j] = P(noisy j | true i))")
    target, keep = _index_setup("forward_corrected_ce", input, target, ignore_index)
    logp = _log_probs(input, from_logits=True)
    c = logp.shape[1]
    t = torch.as_tensor(noise_matrix, dtype=logp.dtype, device=logp.device)
    if t.shape != (c, c):
        raise ValueError(f"loss 'forward_corrected_ce': noise_matrix must be {c} x {c}, got {tuple(t.shape)}")
    log_t_y = torch.log(t).t()[target].movedim(-1, 1)  # log T[k, y] for every k: (N, C, ...)
    loss = -torch.logsumexp(logp + log_t_y, dim=1)
    return _index_reduce(loss, target, keep, weight, reduction)


def uniform_noise_matrix(noise: float, num_classes: int) -> Tensor:
    """``T`` of labels flipped with probability ``noise`` to a uniformly drawn other class."""
    off = noise / (num_classes - 1)
    return torch.full((num_classes, num_classes), off) + (1.0 - noise - off) * torch.eye(num_classes)
