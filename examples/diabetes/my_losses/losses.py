"""Tukey's biweight (bisquare) loss as a plain ``nn.Module``: the harness finds it by its dotted path,
``loss._target_=my_losses.losses.TukeyBiweight``, and passes the config's other keys (``c``) as keyword arguments."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TukeyBiweight(nn.Module):
    """Tukey's biweight (bisquare) loss, a redescending M-estimator loss: Beaton and Tukey (1974), "The fitting of
    power series, meaning polynomials, illustrated on band-spectroscopic data", Technometrics 16(2), 147-185.

    With the residual ``r = input - target`` (elementwise)::

        rho(r) = c**2 / 6 * (1 - (1 - (r / c)**2)**3)    if |r| <= c
        rho(r) = c**2 / 6                                 if |r| >  c

    Its derivative (the influence function) is ``psi(r) = r * (1 - (r / c)**2)**2`` for ``|r| <= c`` and 0 beyond:
    it rises like ``r`` near 0, peaks at ``|r| = c / sqrt(5)`` and falls back to 0 at ``|r| = c``, so a residual
    larger than ``c`` has no gradient at all. Unlike Huber (whose influence stays at ``delta`` for large residuals)
    it ignores gross outliers entirely; the price is a non-convex loss, which needs a start that is not far off.

    Convention: ``rho(r) ~ r**2 / 2`` for small ``r`` (the same scale as Keras's and this library's ``huber``, half
    of ``mse``). ``c`` is in the units of ``input`` and ``target``; the classic ``c = 4.685`` gives 95% asymptotic
    efficiency at Gaussian noise when the residuals are in units of the noise's standard deviation (Huber and
    Ronchetti 2009, "Robust Statistics", 2nd ed., section 4.8). In the harness, ``data=table`` trains on
    standardised targets (``data.standardize_target=true``), so there ``c`` is in target standard deviations.

    Args:
        c (float): the tuning constant, > 0; residuals with ``|r| > c`` are rejected (constant loss, zero gradient).
            Default: ``4.685``.
        reduction (str): ``'none'`` | ``'mean'`` | ``'sum'``. ``'none'``: no reduction will be applied to the
            output. ``'mean'``: the output will be averaged. ``'sum'``: the output will be summed.
            Default: ``'mean'``.

    Shape:
        - input: a float tensor of any shape, the predictions.
        - target: a float tensor of the same shape as ``input``.
        - output: a scalar with ``'mean'`` or ``'sum'``; the shape of ``input`` with ``'none'``.

    The loss is computed in float32 (or in float64 for float64 inputs), also for half-precision inputs.
    """

    def __init__(self, c: float = 4.685, reduction: str = "mean") -> None:
        super().__init__()
        if not c > 0:
            raise ValueError(f"c must be > 0, got {c}")
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
        self.c = float(c)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if input.shape != target.shape:
            raise ValueError(f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}")
        dtype = torch.promote_types(input.dtype, torch.float32)
        u = ((input.to(dtype) - target.to(dtype)) / self.c).clamp(-1.0, 1.0)  # |r| > c: clamped, so zero gradient
        loss = self.c**2 / 6 * (1 - (1 - u.square()) ** 3)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return f"c={self.c}, reduction={self.reduction!r}"
