"""Barron's adaptive loss: the partition function against closed forms and scipy, the loss as a normalised
density, learned alpha and scale that find the tail of the data, and the harness training them."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from scipy import integrate, special

import losses
from harness.run import execute
from harness.train import build_optimizer
from losses.regression import barron_log_partition, barron_adaptive


def rho(x: float, alpha: float) -> float:
    """Barron's rho at unit scale, in plain Python (an independent transcription of eq. 1)."""
    if alpha == 0:
        return math.log(0.5 * x * x + 1)
    if alpha == 2:
        return 0.5 * x * x
    b = abs(alpha - 2)
    return b / alpha * ((x * x / b + 1) ** (alpha / 2) - 1)


def scipy_log_partition(alpha: float) -> float:
    value, _ = integrate.quad(lambda x: math.exp(-rho(x, alpha)), 0, math.inf, epsabs=1e-14, epsrel=1e-12, limit=500)
    return math.log(2 * value)


@pytest.mark.parametrize(
    "alpha, closed_form",
    [
        (0.0, math.log(math.pi * math.sqrt(2))),  # Cauchy
        (1.0, math.log(2 * math.e * special.kv(1, 1))),  # Barron 2019, section 2
        (2.0, 0.5 * math.log(2 * math.pi)),  # Gaussian
        (4.0, 0.25 + math.log(special.kv(0.25, 0.25))),  # exp(-x^4/8 - x^2/2)
    ],
)
def test_log_partition_closed_forms(alpha, closed_form):
    assert barron_log_partition(alpha).item() == pytest.approx(closed_form, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.001, 0.1, 0.37, 0.5, 0.99, 1.5, 1.999, 2.001, 2.7, 3.6])
def test_log_partition_matches_adaptive_quadrature(alpha):
    assert barron_log_partition(alpha).item() == pytest.approx(scipy_log_partition(alpha), abs=1e-10)


def test_log_partition_gradient_matches_finite_differences():
    alpha = torch.tensor([0.05, 0.8, 1.3, 1.95, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(barron_log_partition, (alpha,), eps=1e-6, atol=1e-8)
    (grad,) = torch.autograd.grad(barron_log_partition(alpha).sum(), alpha)
    h = 1e-5
    numeric = [(scipy_log_partition(a + h) - scipy_log_partition(a - h)) / (2 * h) for a in alpha.tolist()]
    torch.testing.assert_close(grad, torch.tensor(numeric, dtype=torch.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("scale", [0.3, 2.0])
def test_loss_is_a_normalised_negative_log_density(alpha, scale):
    def density(x: float) -> float:
        nll = barron_adaptive(torch.tensor([x], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), alpha=alpha, scale=scale)
        return math.exp(-nll.item())

    total, _ = integrate.quad(density, -math.inf, math.inf, epsabs=1e-12, limit=500)
    assert total == pytest.approx(1.0, abs=1e-8)


def test_alpha_two_is_the_gaussian_negative_log_likelihood():
    r = torch.linspace(-3, 3, 13, dtype=torch.float64)
    c = 0.7
    gaussian = 0.5 * (r / c) ** 2 + math.log(c) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(barron_adaptive(r, torch.zeros_like(r), alpha=2.0, scale=c, reduction="none"), gaussian)


def test_gradients_reach_input_alpha_and_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.4, 1.7], dtype=torch.float64, requires_grad=True)  # one per output column
    scale = torch.tensor([0.5, 1.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s, i: barron_adaptive(i, y, alpha=a, scale=s), (alpha, scale, x))


def test_module_learns_alpha_and_scale_as_parameters():
    loss = losses.get("barron_adaptive", alpha=0.5, scale=2.0)
    assert loss.learned() == pytest.approx({"alpha": 0.5, "scale": 2.0}, rel=1e-6)
    assert sum(p.numel() for p in loss.parameters()) == 2
    x, y = torch.randn(10), torch.randn(10)
    torch.testing.assert_close(loss(x, y), barron_adaptive(x, y, alpha=0.5, scale=2.0))
    loss(x, y).backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in loss.parameters())
    assert "alpha=0.5" in repr(loss)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0.001, 1.999\)"):
        losses.get("barron_adaptive", alpha=2.5)
    with pytest.raises(ValueError, match="scale must be a number > 0"):
        losses.get("barron_adaptive", scale=0.0)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0.0, 4.0\]"):
        barron_adaptive(torch.zeros(3), torch.zeros(3), alpha=-1.0)


def fit_shape(sample: torch.Tensor, steps: int = 600) -> dict[str, float]:
    """Maximum-likelihood location, alpha and scale of ``sample`` under Barron's distribution, by Adam."""
    loss = losses.get("barron_adaptive")
    location = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([location, *loss.parameters()], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss(location.expand_as(sample), sample).backward()
        opt.step()
    return {**loss.learned(), "location": location.item()}


def test_learned_alpha_finds_the_tail_of_the_data():
    g = torch.Generator().manual_seed(0)
    gaussian = fit_shape(3.0 + 0.5 * torch.randn(4000, generator=g))
    # the likelihood is flat in alpha near 2 for Gaussian data: 4000 samples put the estimate at ~1.85-1.9
    assert gaussian["alpha"] > 1.7 and gaussian["scale"] == pytest.approx(0.5, rel=0.15)
    assert gaussian["location"] == pytest.approx(3.0, abs=0.05)
    cauchy = fit_shape(3.0 + torch.distributions.Cauchy(0.0, 0.5).sample((4000,)))
    assert cauchy["alpha"] < 0.3
    assert cauchy["location"] == pytest.approx(3.0, abs=0.1)


def test_harness_trains_alpha_and_scale_and_logs_them(make_cfg, store):
    result = execute(make_cfg("loss=barron_adaptive", "data=outliers", "trainer.epochs=20", "seed=0"))
    alphas = [epoch["loss/alpha"] for epoch in result.history]
    assert len(alphas) == 20 and alphas[0] < 1.0 and alphas[-1] < 0.5  # starts at 1.0; 10% gross outliers pull it down
    assert result.test["rmse"] < 1.15 * make_cfg().data.noise_std
    client = MlflowClient(tracking_uri=store)
    history = client.get_metric_history(result.run_id, "loss/alpha")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(alphas)
    assert len(client.get_metric_history(result.run_id, "loss/scale")) == 20


def test_loss_parameters_get_their_own_group_without_weight_decay(make_cfg):
    cfg = make_cfg("loss=barron_adaptive", "optim.name=adamw", "optim.weight_decay=0.1")
    loss = losses.get("barron_adaptive")
    optimizer = build_optimizer(cfg.optim, torch.nn.Linear(3, 1), loss)
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 2]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert len(build_optimizer(cfg.optim, torch.nn.Linear(3, 1), losses.get("huber")).param_groups) == 1
