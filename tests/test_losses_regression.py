"""Regression losses against torch built-ins, hand-computed values and Keras's documented examples."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import regression as R

Y_TRUE = torch.tensor([1.0, 1.0, 0.0])
Y_PRED = torch.tensor([0.9, 0.75, 0.7])


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("mse", {}, 0.1875),
        ("mae", {}, 0.35),
        ("huber", {"delta": 0.5}, 0.0870833),
        ("msle", {}, 0.1006760),
        ("poisson", {}, 0.9143474),
    ],
)
def test_keras_worked_examples(name, kwargs, expected):
    assert losses.get(name, **kwargs)(Y_PRED, Y_TRUE).item() == pytest.approx(expected, abs=1e-6)


def test_log_cosh_by_hand():
    r = torch.tensor([0.1, -0.25, 0.7])
    expected = sum(math.log(math.cosh(v)) for v in r.tolist()) / 3
    assert R.log_cosh(r, torch.zeros(3)).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_against_torch_builtins(dtype):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g, dtype=dtype) * 3, torch.randn(64, 5, generator=g, dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(R.mse(x, y, reduction=reduction), F.mse_loss(x, y, reduction=reduction))
        torch.testing.assert_close(R.mae(x, y, reduction=reduction), F.l1_loss(x, y, reduction=reduction))
        for delta in (0.3, 1.0, 2.5):
            torch.testing.assert_close(
                R.huber(x, y, delta=delta, reduction=reduction), F.huber_loss(x, y, delta=delta, reduction=reduction)
            )
        naive = torch.log(torch.cosh(x - y))  # fine at these magnitudes
        expected = {"mean": naive.mean(), "sum": naive.sum(), "none": naive}[reduction]
        torch.testing.assert_close(R.log_cosh(x, y, reduction=reduction), expected)


def test_huber_is_delta_times_smooth_l1():
    x, y = torch.linspace(-5, 5, 101), torch.zeros(101)
    for b in (0.5, 2.0):
        torch.testing.assert_close(R.huber(x, y, delta=b), b * R.smooth_l1(x, y, beta=b))


@pytest.mark.parametrize("residual", [1e2, 1e4, 1e30])
def test_large_residuals_stay_finite_and_linear(residual):
    x = torch.tensor([residual, -residual], requires_grad=True)
    y = torch.zeros(2)
    lc = R.log_cosh(x, y, reduction="none")
    assert torch.isfinite(lc).all()
    # log(cosh(r)) = |r| - log 2 + log(1 + exp(-2|r|)) -> |r| - log 2
    torch.testing.assert_close(lc, torch.full((2,), residual - math.log(2.0)))
    lc.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, -1.0]))
    hub = R.huber(x.detach(), y, delta=1.0, reduction="none")
    torch.testing.assert_close(hub, torch.full((2,), residual - 0.5))


def test_naive_log_cosh_overflows_where_ours_does_not():
    r = torch.tensor([100.0])
    assert torch.isinf(torch.log(torch.cosh(r))).all()  # what the stable form avoids
    assert torch.isfinite(R.log_cosh(r, torch.zeros(1)))


def test_half_precision_is_computed_in_float32():
    x = torch.tensor([300.0, -2.0], dtype=torch.float16)
    out = R.mse(x, torch.zeros(2, dtype=torch.float16))
    assert out.dtype == torch.float32 and out.item() == pytest.approx((300.0**2 + 4) / 2)


def test_shape_mismatch_is_refused_not_broadcast():
    with pytest.raises(ValueError, match=r"same shape.*\(8, 1\) and \(8,\)"):
        R.mse(torch.zeros(8, 1), torch.zeros(8))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"huber.*delta must be a number > 0, got -1"):
        losses.get("huber", delta=-1)
    with pytest.raises(ValueError, match=r"no argument 'gamma'.*valid arguments"):
        losses.get("huber", gamma=2)
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum', 'none'\]"):
        losses.get("mse", reduction="avg")
    with pytest.raises(ValueError, match=r"unknown loss 'hubber'; valid names: \[.*'huber'"):
        losses.get("hubber")


def test_registry_spec_and_module():
    spec = losses.spec("huber")
    assert spec.tasks == ("regression",) and spec.input == "values" and spec.target == "float"
    assert spec.params == {"delta": 1.0, "scale": 1.0, "weight": None}
    module = losses.get("huber", delta=2.0)
    assert isinstance(module, torch.nn.Module) and type(module).__name__ == "HuberLoss"
    assert "delta=2.0" in repr(module)
    assert losses.spec("l1") is losses.spec("mae")
    assert {"mse", "mae", "huber", "log_cosh"} <= set(losses.available("regression"))
