"""Registry, specs, argument checks and reductions shared by every loss.

A loss is a plain function ``fn(input, target, *, reduction="mean", **params)`` registered with
:func:`register`, which also builds its ``nn.Module`` wrapper. ``losses.get(name, **params)`` returns
that module, with ``params`` checked against the spec before any tensor is seen.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

TASKS = ("regression", "binary", "multiclass", "segmentation", "adversarial")  # the harness trains the first four
INPUTS = ("values", "logits", "probabilities")
TARGETS = ("float", "binary", "index", "one_hot", "mask", "none")  # none: the loss takes no target (GAN generator)
REDUCTIONS = ("mean", "sum", "none")

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Constraint:
    """A named predicate on one argument, e.g. ``Constraint("> 0", lambda v: v > 0)``."""

    text: str
    ok: Check


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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class LossSpec:
    """What a registered loss serves and expects.

    ``tasks``: which of :data:`TASKS` it can train. ``input``: what the first argument holds by default
    (``logits`` losses accept ``from_logits=False`` when ``accepts_probabilities``). ``target``: the
    target format, one of :data:`TARGETS`. ``constraints``: per-argument checks run by :func:`get`.
    ``target_min``: the smallest target value the loss is defined for (0 for count and log losses), if any.
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
        """Raise ``ValueError`` naming the argument for an unknown name or a value outside its constraint."""
        known = self.params
        for key, value in params.items():
            if key == "reduction":
                check_reduction(value)
                continue
            if key not in known:
                raise ValueError(
                    f"loss '{self.name}' has no argument '{key}'; valid arguments: {sorted(known) + ['reduction']}"
                )
            if key in self.constraints and value is not None:
                constraint = self.constraints[key]
                if not constraint.ok(value):
                    raise ValueError(f"loss '{self.name}': {key} must be {constraint.text}, got {value!r}")


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
        (e.g. a per-batch ``weight``)."""
        kwargs = {**self.params, **self._buffers, **overrides} if (self._buffers or overrides) else self.params
        return type(self).spec.fn(input, target, **kwargs)

    def learned(self) -> dict[str, float]:
        """Current values of the quantities this loss learns during training (none for most losses)."""
        return {}

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
    base: type[Loss] = Loss,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator registering a functional loss under ``name`` and building its ``nn.Module`` wrapper, a subclass of
    ``base`` (a :class:`Loss` subclass for losses with learned parameters)."""
    bad = [t for t in tasks if t not in TASKS]
    if bad or input not in INPUTS or target not in TARGETS:
        raise ValueError(f"bad spec for loss '{name}': tasks={tasks}, input={input}, target={target}")

    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"loss '{name}' is already registered")
        doc = (fn.__doc__ or "").strip()
        module = type(_module_name(name), (base,), {"__doc__": doc, "__module__": fn.__module__})
        spec = LossSpec(
            name=name,
            fn=fn,
            module=module,
            tasks=tuple(tasks),
            input=input,
            target=target,
            constraints=dict(constraints or {}),
            aliases=tuple(aliases),
            summary=doc.splitlines()[0] if doc else "",
            target_min=target_min,
        )
        module.spec = spec
        fn.spec = spec  # type: ignore[attr-defined]
        _REGISTRY[name] = spec
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


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
    if not constraint.ok(value):
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
