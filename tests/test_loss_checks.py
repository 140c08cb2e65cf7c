"""One suite of checks that every registered loss passes, in the spirit of scikit-learn's estimator checks.

Examples are built from each loss's spec (its tasks and target format), so a loss added to the registry is
checked here without a new test.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

import pytest
import torch
import torch.nn.functional as F

import losses

SPECS = losses.specs()
NAMES = [s.name for s in SPECS]
C = 4  # classes in multiclass examples

POSITIVE_INPUT = {"poisson", "msle"}  # rate-valued predictions


# What the data gives a loss in the harness (training class counts, the label noise matrix), for the losses that
# need it: C classes.
DATA_ARGS = {s.name: {"class_counts": torch.tensor([50.0, 30.0, 5.0, 1.0])} for s in SPECS if "class_counts" in s.params}
DATA_ARGS.update({s.name: {"noise_matrix": losses.noisy_labels.uniform_noise_matrix(0.2, 4)} for s in SPECS if "noise_matrix" in s.params})


# Quantities a loss takes from each batch without gradient by convention (tukey's MAD scale, bootstrap_ce's own
# prediction in its target, beta_nll's var**beta): gradcheck of the formula with them fixed or differentiated;
# tests/test_losses_round3.py checks each convention.
FIXED_FOR_GRADCHECK = {"tukey": {"scale": 1.3}, "bootstrap_ce": {"detach": False}, "beta_nll": {"beta": 0.0}}


def loss_spec(name: str):
    """The loss's spec, its function bound to the data arguments the harness would pass (see ``DATA_ARGS``)."""
    spec = losses.spec(name)
    if name not in DATA_ARGS:
        return spec
    return dataclasses.replace(spec, fn=functools.partial(spec.fn, **DATA_ARGS[name]))


def has(spec, param: str) -> bool:
    return param in spec.params


def reductions(spec) -> tuple[str, ...]:
    return ("mean",) if spec.name in ("dice_bce", "dice_ce", "dice_focal", "dice_topk", "topk_ce", "boundary") else ("mean", "sum", "none")


def example(spec, dtype=torch.float64, seed=0, mode=None):
    """``(input, target)`` typical of the loss: regression values, binary scores, class scores, or masks."""
    g = torch.Generator().manual_seed(seed)
    if spec.input == "mean_variance":  # a mean and a raw variance per target
        return torch.randn(8, 3, 2, generator=g, dtype=dtype), torch.randn(8, 3, generator=g, dtype=dtype)
    if spec.target == "float":
        x = torch.randn(8, 3, generator=g, dtype=dtype)
        y = torch.randn(8, 3, generator=g, dtype=dtype)
        if spec.name in POSITIVE_INPUT:
            x, y = x.abs() + 0.1, torch.poisson(y.abs() * 3, generator=g)
        return x, y
    if mode == "multilabel":  # a {0, 1} mask per channel
        return torch.randn(2, 3, 5, 5, generator=g, dtype=dtype), torch.randint(0, 2, (2, 3, 5, 5), generator=g).to(dtype)
    if spec.target == "binary":
        return torch.randn(8, 1, generator=g, dtype=dtype), torch.randint(0, 2, (8, 1), generator=g).to(dtype)
    if spec.target == "none":
        return torch.randn(8, 1, generator=g, dtype=dtype), None
    if spec.target == "index":
        return torch.randn(8, C, generator=g, dtype=dtype), torch.randint(0, C, (8,), generator=g)
    if spec.target == "one_hot":
        return torch.randn(8, C, generator=g, dtype=dtype), F.one_hot(torch.randint(0, C, (8,), generator=g), C).to(dtype)
    # masks: binary masks for the binary compound, class-index masks otherwise
    if mode == "binary" or spec.name == "dice_bce":
        return torch.randn(2, 1, 5, 5, generator=g, dtype=dtype), torch.randint(0, 2, (2, 1, 5, 5), generator=g).to(dtype)
    return torch.randn(2, 3, 5, 5, generator=g, dtype=dtype), torch.randint(0, 3, (2, 5, 5), generator=g)


def num_classes(x) -> int:
    return x.shape[1]


def class_weight(spec, x, y):
    """A weight in the form the loss takes: per-class for class targets, elementwise for values."""
    if spec.input == "mean_variance":
        return torch.rand(y.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype) + 0.5
    if spec.target in ("float", "binary", "none") and spec.tasks != ("segmentation",):  # dice_bce: per class
        return torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype) + 0.5
    return torch.rand(num_classes(x), generator=torch.Generator().manual_seed(1), dtype=x.dtype) + 0.5


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_complete(name):
    spec = losses.spec(name)
    assert spec.tasks and set(spec.tasks) <= set(losses.TASKS)
    assert spec.summary, f"{name} needs a docstring"
    assert "reduction" in inspect.signature(spec.fn).parameters
    module = losses.get(name, **DATA_ARGS.get(name, {}))
    assert isinstance(module, torch.nn.Module) and type(module).spec is spec


@pytest.mark.parametrize("name", NAMES)
def test_module_matches_functional(name):
    spec = loss_spec(name)
    x, y = example(spec)
    torch.testing.assert_close(losses.get(name, **DATA_ARGS.get(name, {}))(x, y), spec.fn(x, y))


@pytest.mark.parametrize("name", NAMES)
def test_reductions_are_consistent(name):
    spec = loss_spec(name)
    x, y = example(spec)
    if reductions(spec) == ("mean",):
        for bad in ("sum", "none"):
            with pytest.raises(ValueError, match="reduction"):
                spec.fn(x, y, reduction=bad)
        return
    none = spec.fn(x, y, reduction="none")
    torch.testing.assert_close(spec.fn(x, y, reduction="sum"), none.sum())
    torch.testing.assert_close(spec.fn(x, y, reduction="mean"), none.mean())
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        spec.fn(x, y, reduction="average")


@pytest.mark.parametrize("name", [s.name for s in SPECS if "weight" in s.params])
def test_weights_are_honoured(name):
    spec = loss_spec(name)
    kw = {"mode": "multilabel"} if spec.name == "dice_bce" else {}  # per-class weights need more than one class
    x, y = example(spec, mode=kw.get("mode"))
    w = class_weight(spec, x, y)
    unweighted = spec.fn(x, y, **kw)
    torch.testing.assert_close(spec.fn(x, y, weight=torch.ones_like(w), **kw), unweighted)
    weighted = spec.fn(x, y, weight=w, **kw)
    assert not torch.allclose(weighted, unweighted), "a non-uniform weight must change the loss"
    if "sum" in reductions(spec):
        torch.testing.assert_close(spec.fn(x, y, weight=2 * w, reduction="sum"), 2 * spec.fn(x, y, weight=w, reduction="sum"))


@pytest.mark.parametrize("name", [s.name for s in SPECS if "ignore_index" in s.params])
def test_ignore_index_is_honoured(name):
    """Scores at ignored positions change neither the loss nor get any gradient."""
    spec = loss_spec(name)
    x, y = example(spec)
    y = y.clone()
    ignored = torch.zeros_like(y, dtype=torch.bool)
    ignored.view(-1)[::3] = True
    y[ignored] = 255
    base = spec.fn(x, y, ignore_index=255)
    assert torch.isfinite(base)
    x2 = x.clone().requires_grad_(True)
    spread = ignored if y.shape == x.shape else ignored.unsqueeze(1).expand_as(x)
    perturbed = torch.where(spread, x * 7 + 3, x).detach().requires_grad_(True)
    torch.testing.assert_close(spec.fn(perturbed, y, ignore_index=255), base)
    spec.fn(x2, y, ignore_index=255).backward()
    assert torch.all(x2.grad[spread] == 0)
    assert x2.grad[~spread].abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    spec = loss_spec(name)
    x, y = example(spec, torch.float64, seed=3)
    x = x.detach().requires_grad_(True)
    fixed = FIXED_FOR_GRADCHECK.get(name, {})
    assert torch.autograd.gradcheck(lambda inp: spec.fn(inp, y, **fixed), (x,), eps=1e-6, atol=1e-5)


def values_input(spec, values):
    """``values`` as the loss's input: for a ``mean_variance`` loss, the mean with a raw variance of 0."""
    return torch.stack([values, torch.zeros_like(values)], -1) if spec.input == "mean_variance" else values


def extreme_inputs(spec):
    """Saturated logits (+-100) for scores, residuals of 1e4 for values (and raw variances of +-100 for a
    predicted variance), empty masks for region losses."""
    x, y = example(spec, torch.float32)
    if spec.input == "mean_variance":
        return [(torch.stack([y + 1e4, torch.full_like(y, v)], -1), y) for v in (-100.0, 0.0, 100.0)]
    if spec.target == "float":
        return [(x + 1e4 if spec.name in POSITIVE_INPUT else y + 1e4, y), (y - 1e4 if spec.name not in POSITIVE_INPUT else x * 1e-9, y)]
    signs = torch.where(torch.randn(x.shape, generator=torch.Generator().manual_seed(5)) > 0, 1.0, -1.0)
    cases = [(100 * signs, y), (-100 * torch.ones_like(x), y), (100 * torch.ones_like(x), y)]
    if spec.target == "mask":
        cases.append((100 * signs, torch.zeros_like(y)))  # empty target mask (all background)
        if spec.name not in ("dice_bce", "dice_ce"):
            xb, yb = example(spec, torch.float32, mode="binary")
            cases += [(-100 * torch.ones_like(xb), torch.zeros_like(yb)), (100 * torch.ones_like(xb), torch.zeros_like(yb))]
    return cases


@pytest.mark.parametrize("name", NAMES)
def test_finite_loss_and_gradients_at_extremes(name):
    spec = loss_spec(name)
    for x, y in extreme_inputs(spec):
        x = x.clone().requires_grad_(True)
        loss = spec.fn(x, y)
        loss.backward()
        assert torch.isfinite(loss), f"{name}: loss {loss} at extreme input"
        assert torch.isfinite(x.grad).all(), f"{name}: non-finite gradient at extreme input"


@pytest.mark.parametrize("name", [n for n in NAMES if n in losses.available("binary")])
def test_binary_loss_refuses_multiclass_scores(name):
    with pytest.raises(ValueError, match=r"binary|same shape"):
        loss_spec(name).fn(torch.randn(8, 10), torch.randint(0, 2, (8,)).float())


def confident(x, y, spec, correct: bool):
    """Logits of magnitude 8 agreeing (or disagreeing) with the target."""
    if spec.target == "binary" or (spec.target == "mask" and x.shape[1] == 1):
        sign = (2 * y - 1) if correct else (1 - 2 * y)
        return 8.0 * sign.to(x.dtype)
    index = y if spec.target != "one_hot" else y.argmax(1)
    one_hot = F.one_hot(index if correct else (index + 1) % x.shape[1], x.shape[1]).movedim(-1, 1).to(x.dtype)
    return 8.0 * (2 * one_hot - 1)


@pytest.mark.parametrize("name", [s.name for s in SPECS if s.target != "none"])  # a minimum needs a target
def test_minimum_at_the_target(name):
    spec = loss_spec(name)
    x, y = example(spec)
    if spec.target == "float":
        target = y.clamp_min(0.1) if spec.name in POSITIVE_INPUT else y
        at_target = spec.fn(values_input(spec, target), target)
        for scale in (1e-3, 0.1, 1.0):
            away = target + scale * torch.randn(target.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
            if spec.name in POSITIVE_INPUT:
                away = away.clamp_min(0.05)
            assert spec.fn(values_input(spec, away), target) >= at_target - 1e-12
        return
    good, bad = spec.fn(confident(x, y, spec, True), y), spec.fn(confident(x, y, spec, False), y)
    uniform = spec.fn(torch.zeros_like(x), y)
    assert good < uniform < bad, f"{name}: correct {good:.4g}, uniform {uniform:.4g}, wrong {bad:.4g}"


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_input_is_computed_in_float32(name):
    spec = loss_spec(name)
    x, y = example(spec, torch.float32)
    floating = y is not None and y.is_floating_point()
    y16 = y.half() if floating else y
    out = spec.fn(x.half(), y16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, spec.fn(x.half().float(), y16.float() if floating else y))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cpu_and_cuda_agree(name):
    spec = loss_spec(name)
    x, y = example(spec, torch.float32)
    on_gpu = spec.fn(x.cuda(), y.cuda() if y is not None else None)
    torch.testing.assert_close(on_gpu.cpu(), spec.fn(x, y), rtol=1e-4, atol=1e-5)
