"""Registry, specs, argument checks and reductions shared by every loss.

A loss is a plain function ``fn(input, target, *, reduction="mean", **params)`` registered with
:func:`register`, which also builds its ``nn.Module`` wrapper. ``losses.get(name, **params)`` returns
that module, with ``params`` checked against the spec before any tensor is seen.

Argument checks live in one place: the ``constraints`` given to :func:`register`. The registered (public) function
checks the keyword arguments of each call against them before its body runs, and ``losses.get`` (through
:meth:`LossSpec.check_params`, which the harness also calls before a run is created) checks the module's arguments
against the same :class:`Constraint` objects, so both forms raise the same ``ValueError``. Loss bodies do not check
their arguments themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

TASKS = ("regression", "binary", "multiclass", "segmentation", "adversarial")  # the harness trains the first four
INPUTS = ("values", "logits", "probabilities", "mean_variance")  # mean_variance: (..., 2) mean and raw variance
TARGETS = ("float", "binary", "index", "one_hot", "mask", "none")  # none: the loss takes no target (GAN generator)
REDUCTIONS = ("mean", "sum", "none")

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Constraint:
    """A named predicate on one argument, e.g. ``Constraint("a number > 0", lambda v: v > 0)``.

    ``ok`` sees Python values (numbers, strings, lists). ``None`` is refused unless ``accepts_none`` (see
    :func:`optional`); a ``Tensor`` value is refused unless ``accepts_tensor`` (see :func:`or_tensor`), in which case
    it is let through unchecked: checking its elements would cost a device-to-host sync on every call.
    """

    text: str
    ok: Check
    accepts_none: bool = False
    accepts_tensor: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.accepts_none
        if self.accepts_tensor and isinstance(value, Tensor):
            return True
        return self.ok(value)


def positive() -> Constraint:
    return Constraint("a number > 0", lambda v: _is_number(v) and v > 0)


def non_negative() -> Constraint:
    return Constraint("a number >= 0", lambda v: _is_number(v) and v >= 0)


def in_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Constraint:
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")

    def ok(v: Any) -> bool:
        if not _is_number(v):
            return False
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Constraint(f"a number in {left}{lo}, {hi}{right}", ok)


def one_of(*choices: Any) -> Constraint:
    return Constraint(f"one of {list(choices)}", lambda v: v in choices)


def optional(constraint: Constraint) -> Constraint:
    """``constraint``, also accepting ``None`` (for an argument where ``None`` means "not applied")."""
    return dataclasses.replace(constraint, accepts_none=True)


def or_tensor(constraint: Constraint) -> Constraint:
    """``constraint`` on numbers, also accepting a tensor (unchecked), e.g. a learned parameter passed per call."""
    return dataclasses.replace(constraint, text=f"{constraint.text} or a tensor", accepts_tensor=True)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class LossSpec:
    """What a registered loss serves and expects.

    ``tasks``: which of :data:`TASKS` it can train. ``input``: what the first argument holds by default
    (``logits`` losses accept ``from_logits=False`` when ``accepts_probabilities``). ``target``: the
    target format, one of :data:`TARGETS`. ``constraints``: per-argument checks, the only ones: run on the keyword
    arguments of every call of ``fn`` and by :meth:`check_params` (so by :func:`get`). ``module_constraints``: where
    the module's argument means something narrower than the function's (``barron_adaptive``: the starting value of a
    learned ``alpha``), the stricter constraint :meth:`check_params` uses instead. ``target_min``: the smallest target
    value the loss is defined for (0 for count and log losses), if any. ``binary_weight``: the argument that takes
    binary class weights (``pos_weight = w1 / w0``, or ``alpha = w1 / (w0 + w1)``), if the loss has one. ``fn`` is the public, checking function;
    ``body`` the function as written (``fn`` itself for a loss without constraints), which the module calls with
    its already-checked arguments.
    """

    name: str
    fn: Callable[..., Tensor]
    module: type
    tasks: tuple[str, ...]
    input: str
    target: str
    constraints: Mapping[str, Constraint] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    summary: str = ""
    target_min: float | None = None
    binary_weight: str | None = None
    module_constraints: Mapping[str, Constraint] = field(default_factory=dict)
    body: Callable[..., Tensor] | None = None

    def __post_init__(self) -> None:
        if self.body is None:  # a spec built by hand (not by register): nothing wraps fn
            object.__setattr__(self, "body", self.fn)

    @property
    def checks(self) -> dict[str, Constraint]:
        """The constraints :meth:`check_params` applies: ``constraints`` overridden by ``module_constraints``."""
        return {**self.constraints, **self.module_constraints}

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments of the functional form and their defaults (``reduction`` excluded)."""
        sig = inspect.signature(self.fn)
        return {
            n: p.default
            for n, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "reduction"
        }

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming the argument for an unknown name or a value outside its constraint: the check
        of the module's arguments (by :func:`get`, and by the harness before a run is created)."""
        known = self.params
        checks = self.checks
        for key, value in params.items():
            if key == "reduction":
                check_reduction(value)
                continue
            if key not in known:
                raise ValueError(
                    f"loss '{self.name}' has no argument '{key}'; valid arguments: {sorted(known) + ['reduction']}"
                )
            if key in checks:
                check_param(self.name, key, value, checks[key])


class Loss(nn.Module):
    """``nn.Module`` wrapper around a registered functional loss; keyword arguments are fixed at construction.

    Tensor arguments (class weights, ``pos_weight``) are registered as buffers so ``.to(device)`` moves them.
    """

    spec: LossSpec

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.spec.check_params(params)
        self.params: dict[str, Any] = {}
        for key, value in params.items():
            if isinstance(value, Tensor):
                self.register_buffer(key, value)
            else:
                self.params[key] = value

    def forward(self, input: Tensor, target: Tensor | None = None, **overrides: Any) -> Tensor:
        """The loss of ``input`` against ``target``; ``overrides`` replace fixed arguments for this call only
        (e.g. a per-batch ``weight``) and are checked like the function's arguments; the fixed ones were checked
        at construction."""
        spec = type(self).spec
        if overrides:
            return spec.fn(input, target, **{**self.params, **self._buffers, **overrides})
        kwargs = {**self.params, **self._buffers} if self._buffers else self.params
        return spec.body(input, target, **kwargs)  # type: ignore[misc]

    def learned(self) -> dict[str, float]:
        """Current values of the quantities this loss learns during training (none for most losses)."""
        return {}

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before epoch ``epoch`` (1-based) of ``epochs``; a loss on a schedule overrides it."""

    def extra_repr(self) -> str:
        fixed = [f"{k}={v!r}" for k, v in self.params.items()]
        return ", ".join(fixed + [f"{k}={v:.4g}" for k, v in self.learned().items()])


_REGISTRY: dict[str, LossSpec] = {}
_ALIASES: dict[str, str] = {}


def _module_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", name) if part) + "Loss"


def register(
    name: str,
    *,
    tasks: tuple[str, ...],
    input: str,
    target: str,
    constraints: Mapping[str, Constraint] | None = None,
    aliases: tuple[str, ...] = (),
    target_min: float | None = None,
    binary_weight: str | None = None,
    base: type[Loss] = Loss,
    parts: tuple[Callable[..., Tensor], ...] = (),
    module_constraints: Mapping[str, Constraint] | None = None,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator registering a functional loss under ``name`` and building its ``nn.Module`` wrapper, a subclass of
    ``base`` (a :class:`Loss` subclass for losses with learned parameters).

    It returns ``fn`` wrapped so that the keyword arguments of each call are checked against ``constraints`` before
    the body runs (only the arguments passed: the defaults are checked once, here); a loss without constraints is
    returned as it is. ``parts``: the registered losses a compound loss is made of; an argument of the compound
    named like a constrained argument of a part inherits that constraint (unless ``constraints`` names it).
    ``module_constraints``, ``binary_weight`` (default ``pos_weight`` where ``fn`` has it): see :class:`LossSpec`. A constraint naming no keyword argument of ``fn``, or a default
    that breaks its constraint, is refused here.
    """
    bad = [t for t in tasks if t not in TASKS]
    if bad or input not in INPUTS or target not in TARGETS:
        raise ValueError(f"bad spec for loss '{name}': tasks={tasks}, input={input}, target={target}")

    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"loss '{name}' is already registered")
        keyword = {
            n: p.default
            for n, p in inspect.signature(fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "reduction"
        }
        own = dict(constraints or {})
        for part in parts:
            for key, constraint in part.spec.constraints.items():  # type: ignore[attr-defined]
                if key in keyword and key not in (constraints or {}):
                    if own.get(key, constraint) is not constraint:
                        raise ValueError(f"loss '{name}': its parts constrain '{key}' differently; declare it")
                    own[key] = constraint
        narrower = dict(module_constraints or {})
        for key in [*own, *narrower]:
            if key not in keyword:
                raise ValueError(f"loss '{name}': constraint on '{key}', which is not a keyword argument of it")
        for checks in (own, {**own, **narrower}):
            for key, constraint in checks.items():
                if keyword[key] is not inspect.Parameter.empty:
                    check_param(name, key, keyword[key], constraint)  # the defaults, once
        public = _checked(name, fn, own) if own else fn
        doc = (fn.__doc__ or "").strip()
        module = type(_module_name(name), (base,), {"__doc__": doc, "__module__": fn.__module__})
        spec = LossSpec(
            name=name,
            fn=public,
            module=module,
            tasks=tuple(tasks),
            input=input,
            target=target,
            constraints=own,
            aliases=tuple(aliases),
            summary=doc.splitlines()[0] if doc else "",
            target_min=target_min,
            binary_weight=binary_weight if binary_weight is not None else ("pos_weight" if "pos_weight" in keyword else None),
            module_constraints=narrower,
            body=fn,
        )
        module.spec = spec
        public.spec = spec  # type: ignore[attr-defined]
        _REGISTRY[name] = spec
        for alias in aliases:
            _ALIASES[alias] = name
        return public

    return decorate


def _checked(name: str, fn: Callable[..., Tensor], constraints: Mapping[str, Constraint]) -> Callable[..., Tensor]:
    """``fn`` with the keyword arguments of each call checked against ``constraints`` first: a dict look-up per
    argument passed, and a scalar comparison per constrained one (no tensor work, no device sync)."""
    checks = dict(constraints)
    get_check = checks.get

    @functools.wraps(fn)  # keeps the signature (the spec reads its arguments from it) and the docstring
    def checked(*args: Any, **kwargs: Any) -> Tensor:
        for key, value in kwargs.items():
            constraint = get_check(key)
            if constraint is not None and not constraint.accepts(value):
                check_param(name, key, value, constraint)
        return fn(*args, **kwargs)

    return checked


def spec(name: str) -> LossSpec:
    """The spec of a registered loss (by name or alias)."""
    canonical = _ALIASES.get(name, name)
    if canonical not in _REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid names: {available()}")
    return _REGISTRY[canonical]


def get(name: str, **params: Any) -> Loss:
    """Build the ``nn.Module`` of loss ``name`` with ``params``, checked against its spec."""
    return spec(name).module(**params)


def available(task: str | None = None) -> list[str]:
    """Sorted names of registered losses, optionally only those serving ``task``."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task '{task}'; valid tasks: {list(TASKS)}")
    return sorted(n for n, s in _REGISTRY.items() if task is None or task in s.tasks)


def specs() -> list[LossSpec]:
    return [_REGISTRY[n] for n in available()]


# ----------------------------------------------------------------------------------------------------------
# Helpers used inside the functional forms.


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`, else raise ``ValueError``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction


def check_param(loss: str, name: str, value: Any, constraint: Constraint) -> None:
    """Raise the ``ValueError`` of a value outside its constraint; used by the registry only (by the checking
    function :func:`register` builds and by :meth:`LossSpec.check_params`), never inside a loss body."""
    if not constraint.accepts(value):
        raise ValueError(f"loss '{loss}': {name} must be {constraint.text}, got {value!r}")


def reduce(loss: Tensor, reduction: str, weight: Tensor | None = None) -> Tensor:
    """Reduce an elementwise loss. With ``weight`` (broadcastable), ``mean`` is the weighted mean
    ``sum(w * l) / sum(w)``, as ``torch.nn.functional.cross_entropy`` does for class weights."""
    check_reduction(reduction)
    if weight is not None:
        weight = weight.to(loss.dtype).expand_as(loss)
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is not None:
        return loss.sum() / weight.sum().clamp_min(torch.finfo(loss.dtype).tiny)
    return loss.mean()


def as_float(x: Tensor) -> Tensor:
    """Promote half-precision (and integer) tensors to float32; keep float32/float64 as they are."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.to(torch.float32)


def check_same_shape(loss: str, input: Tensor, target: Tensor) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"loss '{loss}': input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}"
        )


def focal_factor(one_minus_pt: Tensor, gamma: float) -> Tensor:
    """Focal modulating factor ``(1 - p_t)**gamma``, with ``1 - p_t`` floored at 1e-12 so that its gradient stays
    finite for ``gamma < 1`` when ``p_t`` rounds to 1 (where the factor is ~0 anyway)."""
    return one_minus_pt.clamp_min(1e-12).pow(gamma)
