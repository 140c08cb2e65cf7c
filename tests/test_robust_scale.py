"""Robust losses with their scale estimated from each batch (``scale=None``: 1.4826 MAD of the residuals), the
study's answer to scales given as the true noise sd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losses
from losses.regression import robust_scale


def test_robust_scale_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, |r - 3| = 2, 1, 0, 1, 97: MAD 1
    assert float(robust_scale(r)) == pytest.approx(1.4826)
    assert float(robust_scale(torch.zeros(4))) == torch.finfo(torch.float32).eps  # MAD 0: eps, not a division by 0
    torch.manual_seed(0)
    assert float(robust_scale(torch.randn(200_000) * 3.0)) == pytest.approx(3.0, rel=0.01)  # the sd of a normal


def test_huber_scale_counts_delta_in_scales():
    torch.manual_seed(0)
    x, t = torch.randn(64) * 4, torch.randn(64)
    r = x - t
    assert losses.get("huber")(x, t) == F.huber_loss(x, t)  # the default scale 1 is the plain loss
    by_hand = (2.5**2 * F.huber_loss(r / 2.5, torch.zeros_like(r), delta=1.345, reduction="none")).mean()
    assert float(losses.get("huber")(x, t, delta=1.345, scale=2.5)) == pytest.approx(float(by_hand), rel=1e-6)


@pytest.mark.parametrize("name", ["huber", "cauchy", "welsch", "geman_mcclure", "tukey"])
def test_estimated_scale_is_the_batch_mad_and_not_differentiated(name):
    torch.manual_seed(1)
    target = torch.randn(128)
    target[:13] += 25.0  # 10% gross outliers do not inflate the estimate
    x1 = torch.zeros(128, requires_grad=True)
    x2 = torch.zeros(128, requires_grad=True)
    s = float(robust_scale(x1.detach() - target))
    assert 0.8 < s < 1.6
    estimated = losses.get(name)(x1, target, scale=None)
    fixed = losses.get(name)(x2, target, scale=s)
    assert float(estimated) == pytest.approx(float(fixed), rel=1e-6)
    estimated.backward()
    fixed.backward()
    torch.testing.assert_close(x1.grad, x2.grad)  # the scale is a constant of the step, as in Belagiannis et al.
