"""Argument checks come from one place, the spec's constraints: the public function and the module built by
``losses.get`` refuse the same values with the same message, and no loss body checks its own arguments."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import _core
from losses.regression import ALPHA_DOMAIN, ALPHA_RANGE, barron_adaptive

LOSSES_DIR = Path(losses.__file__).parent

# Values tried against every constraint; each one the constraint refuses must be refused by both forms.
CANDIDATES = [-1, -1.0, -1e-3, 0, 0.0, 0.5, 1, 1.0, 2.0, 3, 5.0, 1e9, -math.inf, math.inf, math.nan, "nosuch", [2.0], None]


def small_example(spec):
    """Small valid ``(input, target)`` for the loss, so that only the argument under test can fail."""
    g = torch.Generator().manual_seed(0)
    if spec.input == "mean_variance":
        return torch.randn(6, 2, generator=g), torch.rand(6, generator=g)
    if spec.target == "float":
        return torch.rand(6, generator=g) + 0.1, torch.rand(6, generator=g) + 0.1  # positive: msle, poisson
    if spec.target == "none":
        return torch.randn(6, 1, generator=g), None
    if spec.target == "binary":
        if spec.tasks == ("segmentation",):  # dice_bce: binary masks
            return torch.randn(2, 1, 4, 4, generator=g), torch.randint(0, 2, (2, 1, 4, 4), generator=g).float()
        return torch.randn(6, 1, generator=g), torch.randint(0, 2, (6, 1), generator=g).float()
    if spec.target == "index":
        if spec.tasks == ("segmentation",):  # dice_ce
            return torch.randn(2, 3, 4, 4, generator=g), torch.randint(0, 3, (2, 4, 4), generator=g)
        return torch.randn(6, 3, generator=g), torch.randint(0, 3, (6,), generator=g)
    if spec.target == "one_hot":
        return torch.randn(6, 3, generator=g), F.one_hot(torch.randint(0, 3, (6,), generator=g), 3).float()
    return torch.randn(2, 3, 4, 4, generator=g), torch.randint(0, 3, (2, 4, 4), generator=g)  # mask


def refused(constraint) -> list:
    bad = [v for v in CANDIDATES if not constraint.accepts(v)]
    assert bad, f"no candidate breaks {constraint.text!r}: add one to CANDIDATES"
    return bad


CONSTRAINED = [(s.name, arg) for s in losses.specs() for arg in s.checks]


def test_every_constrained_loss_is_covered():
    constrained = {name for name, _ in CONSTRAINED}
    assert {"huber", "poly1", "symmetric_ce", "multi_margin", "dice_bce", "dice_ce", "barron_adaptive"} <= constrained
    assert constrained == {s.name for s in losses.specs() if s.constraints}


@pytest.mark.parametrize("name, arg", CONSTRAINED, ids=[f"{n}.{a}" for n, a in CONSTRAINED])
def test_bad_value_refused_by_function_and_module_alike(name, arg):
    spec = losses.spec(name)
    x, y = small_example(spec)
    data = {"class_counts": torch.ones(x.shape[1])} if "class_counts" in spec.params else {}  # what the harness passes
    data.update({"noise_matrix": torch.eye(x.shape[1])} if "noise_matrix" in spec.params else {})
    assert torch.isfinite(spec.fn(x, y, **data)), "the example must be valid for the defaults"
    function_check, module_check = spec.constraints[arg], spec.checks[arg]
    for bad in refused(function_check):
        with pytest.raises(ValueError, match=f"'{name}'.*{arg}") as err:
            spec.fn(x, y, **data, **{arg: bad})
        assert str(err.value) == f"loss '{name}': {arg} must be {function_check.text}, got {bad!r}"
    for bad in refused(module_check):
        message = f"loss '{name}': {arg} must be {module_check.text}, got {bad!r}"
        with pytest.raises(ValueError) as err:
            losses.get(name, **{arg: bad})
        assert str(err.value) == message
        with pytest.raises(ValueError) as err:
            spec.check_params({arg: bad})  # what the harness's validator calls before a run is created
        assert str(err.value) == message
    if arg not in spec.module_constraints:  # one constraint object for both forms
        assert module_check is function_check
    module = losses.get(name, **data)
    for bad in refused(function_check):  # a per-call override is checked like a function argument
        with pytest.raises(ValueError, match=f"{arg} must be"):
            module(x, y, **{arg: bad})


@pytest.mark.parametrize("spec", losses.specs(), ids=losses.available())
def test_constraints_name_keyword_arguments_whose_defaults_they_accept(spec):
    params = spec.params
    for arg, constraint in spec.checks.items():
        assert arg in params, f"{spec.name}: constraint on unknown argument {arg}"
        assert params[arg] is None and constraint.accepts_none or constraint.accepts(params[arg])
    assert set(spec.module_constraints) <= set(spec.constraints)


@pytest.mark.parametrize("spec", losses.specs(), ids=losses.available())
def test_public_function_is_the_checking_one(spec):
    module = __import__(spec.body.__module__, fromlist=["_"])
    assert getattr(module, spec.body.__name__) is spec.fn
    assert spec.fn.spec is spec
    if spec.constraints:
        assert spec.fn is not spec.body and spec.fn.__wrapped__ is spec.body
        assert spec.fn.__doc__ == spec.body.__doc__
    else:
        assert spec.fn is spec.body  # nothing to check: no wrapper at all


def _callers_of(tree: ast.AST, name: str) -> list[str]:
    """Names of the functions (innermost) that call ``name``; ``<module>`` for a call at module level."""
    found: list[str] = []

    def visit(node: ast.AST, owner: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, getattr(child, "name", "<lambda>"))
                continue
            if isinstance(child, ast.Call) and name in (getattr(child.func, "id", None), getattr(child.func, "attr", None)):
                found.append(owner)
            visit(child, owner)

    visit(tree, "<module>")
    return found


@pytest.mark.parametrize("path", sorted(LOSSES_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_loss_body_checks_its_arguments(path):
    """Argument checks are the registry's: ``check_param`` is called only in ``_core`` by the checking wrapper
    (``checked``), the registration's check of the defaults (``decorate``) and ``LossSpec.check_params``; no loss
    module calls or imports it."""
    tree = ast.parse(path.read_text())
    callers = _callers_of(tree, "check_param")
    if path.name == "_core.py":
        assert set(callers) == {"checked", "decorate", "check_params"}
        return
    assert callers == [], f"{path.name} calls check_param in {callers}"
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "check_param" not in imported


def test_dice_compounds_refuse_bad_smooth_before_any_run(make_cfg):
    from harness.config import validate  # the harness's check of a config, before any run is created

    for name in ("dice_bce", "dice_ce"):
        spec = losses.spec(name)
        assert spec.constraints["smooth"] is losses.spec("dice").constraints["smooth"]  # inherited from the part
        with pytest.raises(ValueError, match=f"loss '{name}': smooth must be a number >= 0, got -1"):
            spec.check_params({"smooth": -1})
    with pytest.raises(ValueError, match=r"loss 'dice_bce': smooth must be a number >= 0, got -1"):
        validate(make_cfg("data=segmentation", "loss=dice_bce", "loss.smooth=-1"))


def test_barron_adaptive_alpha_ranges():
    """The function is defined for alpha in ``ALPHA_DOMAIN`` = [0, 4]; the module's alpha is the starting value of a
    learned alpha confined to the open ``ALPHA_RANGE`` = (0.001, 1.999). Both are declared in the registry."""
    spec = losses.spec("barron_adaptive")
    lo, hi = ALPHA_RANGE
    assert ALPHA_DOMAIN[0] <= lo < hi <= ALPHA_DOMAIN[1]
    x, y = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    for alpha in (0.0, 2.0, 2.5, 4.0):
        assert torch.isfinite(barron_adaptive(x, y, alpha=alpha))
    assert torch.isfinite(barron_adaptive(x, y, alpha=torch.tensor(1.5, dtype=torch.float64)))  # tensors: unchecked
    for alpha in (-0.1, 4.5):
        with pytest.raises(ValueError, match=r"alpha must be a number in \[0.0, 4.0\]"):
            barron_adaptive(x, y, alpha=alpha)
    for alpha in (lo, hi, 0.0, 2.5, torch.tensor(1.0)):
        with pytest.raises(ValueError, match=r"alpha must be a number in \(0.001, 1.999\)"):
            losses.get("barron_adaptive", alpha=alpha)
    with pytest.raises(ValueError, match=r"scale must be a number > 0, got tensor"):
        losses.get("barron_adaptive", scale=torch.tensor(1.0))
    assert losses.get("barron_adaptive", alpha=1.9).learned()["alpha"] == pytest.approx(1.9, rel=1e-6)
    assert spec.checks["alpha"] is spec.module_constraints["alpha"]


def test_none_only_where_the_constraint_allows_it():
    x, y = torch.randn(6, 1), torch.randint(0, 2, (6, 1)).float()
    losses.get("focal", alpha=None)
    losses.binary.focal(x, y, alpha=None)
    losses.get("categorical_focal", alpha=None)
    with pytest.raises(ValueError, match=r"loss 'huber': delta must be a number > 0, got None"):
        losses.get("huber", delta=None)
    with pytest.raises(ValueError, match=r"loss 'huber': delta must be a number > 0, got None"):
        losses.regression.huber(x, x, delta=None)


def test_registration_refuses_drifting_constraints():
    def fn(input, target, *, delta: float = -1.0, reduction: str = "mean"):
        """A loss."""
        return input

    spec_args = dict(tasks=("regression",), input="values", target="float")
    with pytest.raises(ValueError, match=r"constraint on 'nosuch', which is not a keyword argument"):
        _core.register("_test_bad_name", constraints={"nosuch": _core.positive()}, **spec_args)(fn)
    with pytest.raises(ValueError, match=r"loss '_test_bad_default': delta must be a number > 0, got -1.0"):
        _core.register("_test_bad_default", constraints={"delta": _core.positive()}, **spec_args)(fn)
    assert not {"_test_bad_name", "_test_bad_default"} & set(losses.available())


def test_module_calls_the_body_with_its_checked_arguments():
    """The module's fixed arguments were checked at construction, so a call without overrides goes straight to the
    body; overrides go through the checking function."""
    module = losses.get("huber", delta=0.5)
    spec = losses.spec("huber")
    x, y = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(module(x, y), spec.body(x, y, delta=0.5))
    torch.testing.assert_close(module(x, y, delta=2.0), spec.fn(x, y, delta=2.0))
