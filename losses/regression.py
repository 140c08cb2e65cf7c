"""Regression losses on raw predicted values.

Every function takes ``input`` (predictions) and ``target`` of the same shape (a shape mismatch raises instead
of broadcasting ``(N, 1)`` against ``(N,)`` into ``(N, N)``), an optional elementwise ``weight`` broadcastable
to them, and ``reduction`` in ``mean | sum | none``; ``mean`` over all elements equals Keras's per-sample mean
over the last axis followed by the batch mean. Half-precision inputs are computed in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._core import Constraint, Loss, as_float, check_reduction, check_same_shape, in_range, non_negative, optional, or_tensor, positive, reduce, register

_EPS = 1e-7  # Keras's backend epsilon, used where Keras clips

_REG = dict(tasks=("regression",), input="values", target="float")


def _prepare(name: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    check_same_shape(name, input, target)
    return as_float(input), as_float(target).to(as_float(input).dtype)


@register("mse", aliases=("mean_squared_error", "l2"), **_REG)
def mse(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)**2`` (Keras ``MeanSquaredError``, ``torch.nn.MSELoss``)."""
    input, target = _prepare("mse", input, target)
    if weight is None:
        return F.mse_loss(input, target, reduction=check_reduction(reduction))
    return reduce((input - target).square(), reduction, weight)


@register("mae", aliases=("mean_absolute_error", "l1"), **_REG)
def mae(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|input - target|`` (Keras ``MeanAbsoluteError``, ``torch.nn.L1Loss``)."""
    input, target = _prepare("mae", input, target)
    if weight is None:
        return F.l1_loss(input, target, reduction=check_reduction(reduction))
    return reduce((input - target).abs(), reduction, weight)


MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4): the MAD of a normal sample times this estimates its sd


def robust_scale(r: Tensor) -> Tensor:
    """``1.4826 * MAD`` of the residuals ``r`` (the median absolute deviation from their median): an estimate of
    their sd that gross outliers do not inflate. Not differentiated (a constant of each step); medians as
    ``torch.median`` takes them (the lower middle value of an even count); the dtype's eps when the MAD is 0 (half
    the residuals equal, or a batch of one), rather than a division by 0. Every element counts, whatever its weight."""
    with torch.no_grad():
        flat = r.detach().reshape(-1)
        mad = (flat - flat.median()).abs().median()
        return (MAD_TO_SD * mad).clamp_min(torch.finfo(r.dtype).eps)


@register("huber", constraints={"delta": positive(), "scale": optional(positive())}, **_REG)
def huber(
    input: Tensor,
    target: Tensor,
    *,
    delta: float = 1.0,
    scale: float | None = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Huber loss: ``0.5 r**2`` for ``|r| <= delta``, else ``delta * (|r| - 0.5 delta)``, with ``r = input - target``;
    with a ``scale`` s, ``s**2 * huber(r / s)``: ``delta`` counted in scales (the default ``s = 1`` is the plain loss).

    Convention: Keras ``Huber`` and ``torch.nn.HuberLoss`` (quadratic part not divided by ``delta``). It differs
    from ``smooth_l1`` by the factor ``delta``: ``huber(delta=b) == b * smooth_l1(beta=b)``. Huber (1964)'s
    95%-efficiency choice under Gaussian noise is ``delta = 1.345 * sigma``. ``scale=None``: s is estimated from
    each batch's residuals (:func:`robust_scale`, 1.4826 MAD), so ``delta`` needs no known noise level.
    """
    input, target = _prepare("huber", input, target)
    if scale is None or scale != 1:
        s = robust_scale(input - target) if scale is None else scale
        return reduce((s * s) * F.huber_loss(input / s, target / s, reduction="none", delta=delta), reduction, weight)
    if weight is None:
        return F.huber_loss(input, target, reduction=check_reduction(reduction), delta=delta)
    return reduce(F.huber_loss(input, target, reduction="none", delta=delta), reduction, weight)


@register("smooth_l1", constraints={"beta": non_negative()}, **_REG)
def smooth_l1(
    input: Tensor, target: Tensor, *, beta: float = 1.0, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Smooth L1: ``0.5 r**2 / beta`` for ``|r| < beta``, else ``|r| - 0.5 beta`` (``torch.nn.SmoothL1Loss``).

    Its linear part has slope 1 whatever ``beta`` (``beta = 0`` is L1); see ``huber`` for the other scaling.
    """
    input, target = _prepare("smooth_l1", input, target)
    if weight is None:
        return F.smooth_l1_loss(input, target, reduction=check_reduction(reduction), beta=beta)
    return reduce(F.smooth_l1_loss(input, target, reduction="none", beta=beta), reduction, weight)


@register("log_cosh", aliases=("logcosh",), **_REG)
def log_cosh(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Log-cosh ``log(cosh(r))``, computed as ``|r| + softplus(-2|r|) - log 2`` so it never overflows
    (Keras ``LogCosh``). About ``r**2 / 2`` for small residuals and ``|r| - log 2`` for large ones."""
    input, target = _prepare("log_cosh", input, target)
    r = (input - target).abs()
    return reduce(r + F.softplus(-2.0 * r) - math.log(2.0), reduction, weight)


@register("msle", aliases=("mean_squared_logarithmic_error",), target_min=0.0, **_REG)
def msle(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Mean squared logarithmic error ``(log1p(input) - log1p(target))**2``.

    Convention: Keras ``MeanSquaredLogarithmicError``: both arguments are clipped below at ``1e-7`` first, so
    negative predictions are treated as 0 instead of producing NaN.
    """
    input, target = _prepare("msle", input, target)
    log_input, log_target = torch.log1p(input.clamp_min(_EPS)), torch.log1p(target.clamp_min(_EPS))
    if weight is None:
        return F.mse_loss(log_input, log_target, reduction=check_reduction(reduction))
    return reduce((log_input - log_target).square(), reduction, weight)


@register("mape", aliases=("mean_absolute_percentage_error",), **_REG)
def mape(input: Tensor, target: Tensor, *, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Mean absolute percentage error ``100 * |target - input| / max(|target|, 1e-7)`` (Keras ``MeanAbsolutePercentageError``)."""
    input, target = _prepare("mape", input, target)
    return reduce(100.0 * (target - input).abs() / target.abs().clamp_min(_EPS), reduction, weight)


@register("poisson", target_min=0.0, **_REG)
def poisson(
    input: Tensor,
    target: Tensor,
    *,
    log_input: bool = False,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Poisson negative log-likelihood without the ``log(target!)`` constant.

    ``log_input=False`` (default, Keras ``Poisson``): ``input`` is the rate, loss ``input - target * log(input + 1e-7)``.
    ``log_input=True`` (``torch.nn.PoissonNLLLoss`` default): ``input`` is the log-rate, loss ``exp(input) - target * input``,
    the stable choice for a model with a raw linear output.
    """
    input, target = _prepare("poisson", input, target)
    if log_input:
        loss = torch.exp(input) - target * input
    else:
        loss = input - target * torch.log(input + _EPS)
    return reduce(loss, reduction, weight)


@register("quantile", aliases=("pinball",), constraints={"q": in_range(0.0, 1.0, lo_open=True, hi_open=True)}, **_REG)
def quantile(
    input: Tensor, target: Tensor, *, q: float = 0.5, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Pinball loss for quantile ``q``: ``max(q * r, (q - 1) * r)`` with ``r = target - input``.

    Minimised by the ``q``-quantile of the target distribution; ``q = 0.5`` is half the absolute error.
    """
    input, target = _prepare("quantile", input, target)
    r = target - input
    return reduce(torch.maximum(q * r, (q - 1.0) * r), reduction, weight)


@register("cauchy", aliases=("lorentzian",), constraints={"scale": optional(positive())}, **_REG)
def cauchy(
    input: Tensor, target: Tensor, *, scale: float | None = 1.0, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Cauchy (Lorentzian) loss ``log(1 + 0.5 (r / scale)**2)``.

    Convention: Barron (2019)'s ``alpha = 0`` member, so ``cauchy(scale=c) == barron(alpha=0, scale=c)``; it is
    ``r**2 / (2 c**2)`` near 0 and grows only logarithmically, so gross outliers have vanishing influence.
    ``scale=None``: estimated from each batch's residuals (:func:`robust_scale`, 1.4826 MAD).
    """
    input, target = _prepare("cauchy", input, target)
    r = input - target
    return reduce(torch.log1p(0.5 * _scaled_square(r, robust_scale(r) if scale is None else scale)), reduction, weight)


def _scaled_square(r: Tensor, scale: float | Tensor) -> Tensor:
    """``(r / scale)**2``, without the division when ``scale`` is the number 1."""
    return (r if isinstance(scale, (int, float)) and scale == 1 else r / scale).square()


_BARRON_ALPHA = Constraint(
    "a finite number or -inf",
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) and v != math.inf,
)


@register(
    "barron",
    aliases=("general_robust",),
    constraints={"alpha": _BARRON_ALPHA, "scale": positive()},
    **_REG,
)
def barron(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    scale: float = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Barron (2019) general robust loss ``|a-2|/a * (((r/c)**2 / |a-2| + 1)**(a/2) - 1)`` for shape ``a = alpha``
    and scale ``c``.

    Special cases, computed by their closed forms: ``a = 2`` is ``0.5 (r/c)**2`` (L2), ``a = 1`` is
    ``sqrt((r/c)**2 + 1) - 1`` (pseudo-Huber / Charbonnier), ``a = 0`` is ``log(0.5 (r/c)**2 + 1)`` (Cauchy),
    ``a = -2`` is Geman-McClure and ``a = -inf`` is ``1 - exp(-0.5 (r/c)**2)`` (Welsch). Fixed ``alpha``;
    ``barron_adaptive`` learns ``alpha`` and ``scale``.
    """
    input, target = _prepare("barron", input, target)
    return reduce(_rho(_scaled_square(input - target, scale), alpha), reduction, weight)


def _rho(x2: Tensor, alpha: float | Tensor) -> Tensor:
    """Barron's ``rho`` at squared scaled residuals ``x2`` for shape ``alpha``.

    A number ``alpha`` uses the closed forms at 2, 1, 0 and -inf. A tensor ``alpha`` (``>= 0``, broadcastable to
    ``x2``, e.g. a learned one) uses the general form with ``alpha`` and ``|alpha - 2|`` floored at the dtype's
    epsilon, as Barron's code does: it tends to the closed forms at 0 and 2 and keeps a gradient there.
    """
    if isinstance(alpha, Tensor):
        eps = torch.finfo(x2.dtype).eps
        b, a = (alpha - 2.0).abs().clamp_min(eps), alpha.clamp_min(eps)
        return (b / a) * torch.expm1((a / 2.0) * torch.log1p(x2 / b))
    if alpha == 2:
        return 0.5 * x2
    if alpha == 1:
        return x2 / (torch.sqrt(x2 + 1.0) + 1.0)  # sqrt(x2 + 1) - 1 without cancellation
    if alpha == 0:
        return torch.log1p(0.5 * x2)
    if alpha == -math.inf:
        return -torch.expm1(-0.5 * x2)
    b = abs(alpha - 2.0)
    return (b / alpha) * torch.expm1((alpha / 2.0) * torch.log1p(x2 / b))


# Exp-sinh quadrature for log Z(alpha): x = exp(pi/2 sinh t), trapezoid in t with step 1/32 on [-4.5, 4.5], which
# spans x from e^-70 to e^70; the error is ~1e-14 for alpha in [0, 4] (tested against scipy's adaptive quadrature).
_QUAD_STEP, _QUAD_SPAN = 1.0 / 32.0, 4.5
_NODES: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}


def _quadrature_nodes(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Squared nodes ``x**2`` and log weights of the quadrature of an even function over the real line (in float64,
    ``x**2`` reaches 1e61, where ``rho`` stays finite for ``alpha <= 4``)."""
    key = (device, dtype)
    if key not in _NODES:
        t = torch.arange(-_QUAD_SPAN, _QUAD_SPAN + _QUAD_STEP / 2, _QUAD_STEP, dtype=torch.float64)
        log_x = (math.pi / 2.0) * torch.sinh(t)
        log_w = math.log(2.0 * _QUAD_STEP * math.pi / 2.0) + log_x + torch.log(torch.cosh(t))  # 2 for both half-lines
        _NODES[key] = (torch.exp(2.0 * log_x).to(device, dtype), log_w.to(device, dtype))
    return _NODES[key]


def barron_log_partition(alpha: float | Tensor) -> Tensor:
    """``log Z(alpha)`` with ``Z(alpha) = integral of exp(-rho(x, alpha, 1)) dx`` over the real line (Barron 2019, eq. 16),
    for ``alpha`` in ``[0, 4]`` (``Z`` diverges for ``alpha < 0``): ``log(pi sqrt 2)`` at 0, ``log(2 e K_1(1))`` at 1,
    ``log(sqrt(2 pi))`` at 2.

    Computed by quadrature at every call rather than Barron's precomputed spline, in float64 (on the CPU for MPS
    tensors, since MPS has no float64), and differentiable in ``alpha`` by autograd. Returns a tensor of ``alpha``'s
    shape, dtype and device.
    """
    alpha = torch.as_tensor(alpha, dtype=torch.float64 if not isinstance(alpha, Tensor) else None)
    if alpha.device.type == "mps":
        return barron_log_partition(alpha.cpu()).to(alpha.device)
    x2, log_w = _quadrature_nodes(alpha.device, torch.float64)
    log_z = torch.logsumexp(log_w - _rho(x2, alpha.double().unsqueeze(-1)), dim=-1)
    return log_z.to(alpha.dtype) if alpha.is_floating_point() else log_z


@functools.lru_cache(maxsize=64)
def _log_partition_of(alpha: float) -> float:
    return barron_log_partition(alpha).item()


ALPHA_RANGE = (0.001, 1.999)  # Barron's AdaptiveLossFunction defaults: where the module's learned alpha lives
ALPHA_DOMAIN = (0.0, 4.0)  # where the functional form is defined: log Z(alpha) is computed (and tested) on [0, 4]
SCALE_MIN = 1e-5


class AdaptiveLoss(Loss):
    """Module of ``barron_adaptive``: ``alpha`` and ``scale`` are learned parameters, initialised from the arguments.

    ``alpha = lo + (hi - lo) * sigmoid(a)`` stays in ``ALPHA_RANGE`` and ``scale = 1e-5 + softplus(s)`` stays positive,
    as in Barron's ``AdaptiveLossFunction``; one ``alpha`` and one ``scale`` are shared by all outputs.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        lo, hi = ALPHA_RANGE
        alpha = torch.tensor((self.params.pop("alpha", 1.0) - lo) / (hi - lo), dtype=torch.float64)
        scale = torch.tensor(self.params.pop("scale", 1.0) - SCALE_MIN, dtype=torch.float64)
        self.alpha_latent = nn.Parameter(torch.logit(alpha).float())
        self.scale_latent = nn.Parameter((scale + torch.log(-torch.expm1(-scale))).float())  # softplus^-1

    def alpha(self) -> Tensor:
        lo, hi = ALPHA_RANGE
        return lo + (hi - lo) * torch.sigmoid(self.alpha_latent)

    def scale(self) -> Tensor:
        return SCALE_MIN + F.softplus(self.scale_latent)

    def forward(self, input: Tensor, target: Tensor, **overrides: Any) -> Tensor:
        return super().forward(input, target, **{"alpha": self.alpha(), "scale": self.scale(), **overrides})

    def learned(self) -> dict[str, float]:
        with torch.no_grad():
            return {"alpha": float(self.alpha()), "scale": float(self.scale())}


@register(
    "barron_adaptive",
    aliases=("adaptive_robust",),
    constraints={"alpha": or_tensor(in_range(*ALPHA_DOMAIN)), "scale": or_tensor(positive())},
    # the module's alpha and scale are the starting values of learned parameters: numbers, and alpha inside the
    # open range its sigmoid reaches (the logit of an end point is infinite)
    module_constraints={"alpha": in_range(*ALPHA_RANGE, lo_open=True, hi_open=True), "scale": positive()},
    base=AdaptiveLoss,
    **_REG,
)
def barron_adaptive(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | Tensor = 1.0,
    scale: float | Tensor = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Barron (2019)'s adaptive robust loss: the negative log-likelihood ``rho(r, alpha, c) + log c + log Z(alpha)``
    of his distribution, so that ``alpha`` (robustness) and ``scale`` ``c`` can be learned with the model.

    ``losses.get("barron_adaptive", alpha=1.0, scale=1.0)`` returns a module whose ``alpha`` and ``scale`` are
    parameters started at those values (see :class:`AdaptiveLoss`), so there ``alpha`` must lie in the open range
    ``ALPHA_RANGE = (0.001, 1.999)`` that the learned ``alpha`` stays in. The functional form takes them as numbers
    or tensors broadcastable to the residuals, a number ``alpha`` in ``ALPHA_DOMAIN = [0, 4]`` (where ``log Z`` is
    computed; tensors are not checked). Both ranges are declared in the registry. The ``log Z`` term is what stops a learned
    ``alpha`` from simply sliding to the least penalising shape, and ``log c`` stops ``c`` from growing without
    bound; the loss can be negative. ``log Z`` comes from :func:`barron_log_partition`.
    """
    input, target = _prepare("barron_adaptive", input, target)
    x2 = _scaled_square(input - target, scale)
    if isinstance(alpha, Tensor):
        alpha = alpha.to(input.dtype)
        log_z = barron_log_partition(alpha).to(input.dtype)
    else:
        log_z = _log_partition_of(alpha)
    log_c = torch.log(scale) if isinstance(scale, Tensor) else math.log(scale)
    const, rho = log_c + log_z, _rho(x2, alpha)
    if reduction == "mean" and (not isinstance(const, Tensor) or const.ndim == 0):
        return reduce(rho, reduction, weight) + const  # (weighted) mean of rho + k is mean(rho) + k: one pass fewer
    return reduce(rho + const, reduction, weight)


# ------------------------------------------------------------------------------------- members of Barron's family
# Each is ``barron`` at one alpha (its closed form), under its own name: the losses robust-vision papers cite.


@register("welsch", aliases=("leclerc",), constraints={"scale": optional(positive())}, **_REG)
def welsch(input: Tensor, target: Tensor, *, scale: float | None = 1.0, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Welsch (Leclerc) loss ``1 - exp(-0.5 (r / scale)**2)``: Barron's ``alpha = -inf``, bounded by 1.
    ``scale=None``: estimated from each batch's residuals (:func:`robust_scale`, 1.4826 MAD)."""
    input, target = _prepare("welsch", input, target)
    r = input - target
    return reduce(1.0 - torch.exp(-0.5 * _scaled_square(r, robust_scale(r) if scale is None else scale)), reduction, weight)  # exp: expm1 is slow on CPU  # exp: expm1 is slow on CPU


@register("geman_mcclure", constraints={"scale": optional(positive())}, **_REG)
def geman_mcclure(input: Tensor, target: Tensor, *, scale: float | None = 1.0, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Geman-McClure loss ``2 (r / scale)**2 / ((r / scale)**2 + 4)``: Barron's ``alpha = -2``, bounded by 2.
    ``scale=None``: estimated from each batch's residuals (:func:`robust_scale`, 1.4826 MAD).

    Convention: Barron's scaling (quadratic ``0.5 (r/c)**2`` near 0); Geman & McClure (1987) wrote
    ``r**2 / (r**2 + c**2)``, which is ours at ``scale = c / 2`` divided by 2."""
    input, target = _prepare("geman_mcclure", input, target)
    r = input - target
    x2 = _scaled_square(r, robust_scale(r) if scale is None else scale)
    return reduce(2.0 * x2 / (x2 + 4.0), reduction, weight)


@register("charbonnier", aliases=("pseudo_huber",), constraints={"scale": positive()}, **_REG)
def charbonnier(input: Tensor, target: Tensor, *, scale: float = 1.0, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Charbonnier (pseudo-Huber, smooth L1-L2) loss ``sqrt((r / scale)**2 + 1) - 1``: Barron's ``alpha = 1``."""
    input, target = _prepare("charbonnier", input, target)
    return reduce(_rho(_scaled_square(input - target, scale), 1.0), reduction, weight)


@register("tukey", aliases=("biweight", "tukey_biweight"), constraints={"c": positive(), "scale": optional(positive())}, **_REG)
def tukey(
    input: Tensor,
    target: Tensor,
    *,
    c: float = 4.685,
    scale: float | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Tukey's biweight ``c**2 / 6 (1 - (1 - (u / c)**2)**3)`` for ``|u| <= c``, else ``c**2 / 6``, of the scaled
    residuals ``u = r / s`` (Belagiannis et al. 2015): redescending, so residuals beyond ``c`` scales get no gradient.

    ``scale=None`` (the paper's): ``s = 1.4826 * MAD`` of the batch's residuals, the median absolute deviation
    from their median, estimated per call and not differentiated (a constant of each step, as in the paper); a
    number fixes ``s``. ``c = 4.685`` gives 95% efficiency at the normal. A batch whose MAD is 0 (half the residuals
    equal) takes ``s`` = the dtype's eps rather than dividing by 0.
    """
    input, target = _prepare("tukey", input, target)
    r = input - target
    s = robust_scale(r) if scale is None else scale
    u2 = (r / s).square() / (c * c)
    rho = (c * c / 6.0) * (1.0 - (1.0 - u2.clamp_max(1.0)) ** 3)
    return reduce(rho, reduction, weight)


# ------------------------------------------------------------------------------------------- heteroscedastic
# The model emits two numbers per target, ``input[..., 0]`` the mean and ``input[..., 1]`` a raw variance mapped to
# ``softplus(raw) + MIN_VARIANCE``; ``target`` has the shape ``input.shape[:-1]``.

MIN_VARIANCE = 1e-6
_HETERO = dict(tasks=("regression",), input="mean_variance", target="float")


def mean_and_variance(input: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and the variance a ``mean_variance`` output encodes (the harness's metrics read them here too)."""
    x = as_float(input)
    return x[..., 0], F.softplus(x[..., 1]) + MIN_VARIANCE


def _hetero(name: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if input.shape[-1:] != (2,) or input.shape[:-1] != target.shape:
        raise ValueError(
            f"loss '{name}' takes a mean and a raw variance per target: input (..., 2) with target (...), got input "
            f"{tuple(input.shape)} and target {tuple(target.shape)}"
        )
    mean, var = mean_and_variance(input)
    return mean, var, as_float(target).to(mean.dtype)


@register("gaussian_nll", aliases=("heteroscedastic_nll",), **_HETERO)
def gaussian_nll(input: Tensor, target: Tensor, *, full: bool = False, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Gaussian negative log-likelihood ``0.5 (log var + (y - mean)**2 / var)`` of a predicted mean and variance
    (Nix & Weigend 1994), ``torch.nn.functional.gaussian_nll_loss``'s convention (``full=True`` adds
    ``0.5 log(2 pi)``). The model says which points it does not trust: a large variance discounts their residual."""
    mean, var, target = _hetero("gaussian_nll", input, target)
    loss = 0.5 * (torch.log(var) + (target - mean).square() / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return reduce(loss, reduction, weight)


@register("beta_nll", constraints={"beta": in_range(0.0, 1.0)}, **_HETERO)
def beta_nll(
    input: Tensor, target: Tensor, *, beta: float = 0.5, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """beta-NLL (Seitzer et al. 2022): the Gaussian NLL of each point times ``var**beta`` taken without gradient,
    so that points with a large predicted variance still pull the mean (``beta = 0`` is ``gaussian_nll``; ``beta =
    1`` gives the mean the gradient of MSE). Default 0.5, the paper's."""
    mean, var, target = _hetero("beta_nll", input, target)
    loss = 0.5 * (torch.log(var) + (target - mean).square() / var)
    return reduce(loss * var.detach() ** beta if beta else loss, reduction, weight)
