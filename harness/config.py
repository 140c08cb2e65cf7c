"""Validate a composed config before any data is built or any run is created.

Each rule names a dotted key, the values it allows and, when broken, raises :class:`ConfigError` with a message
that names the key, the value given and what is allowed. Rules for keys a config does not have are skipped, so
one table serves every ``data``/``model``/``optim`` choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

import losses

from .tasks import task_of_data

DEVICES = ("auto", "cpu", "cuda", "mps")


class ConfigError(ValueError):
    """A config that cannot work; raised before any training starts."""


@dataclass(frozen=True)
class Rule:
    allowed: str
    ok: Callable[[Any], bool]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(lo: int) -> Rule:
    return Rule(f"an integer >= {lo}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo)


def _gt(lo: float) -> Rule:
    return Rule(f"a number > {lo}", lambda v: _num(v) and v > lo)


def _ge(lo: float) -> Rule:
    return Rule(f"a number >= {lo}", lambda v: _num(v) and v >= lo)


def _frac(hi_open: bool = True) -> Rule:
    text = "a number in [0, 1)" if hi_open else "a number in [0, 1]"
    return Rule(text, lambda v: _num(v) and 0 <= v and (v < 1 if hi_open else v <= 1))


def _choice(*choices: Any) -> Rule:
    return Rule(f"one of {list(choices)}", lambda v: v in choices)


def _int_list(lo: int) -> Rule:
    return Rule(
        f"a list of integers >= {lo}",
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, int) and x >= lo for x in v),
    )


RULES: dict[str, Rule] = {
    "seed": _int(0),
    "trainer.epochs": _int(1),
    "trainer.batch_size": _int(1),
    "trainer.device": _choice(*DEVICES),
    "trainer.progress": _choice(True, False),
    "optim.name": _choice("adam", "adamw", "sgd"),
    "optim.lr": _gt(0),
    "optim.weight_decay": _ge(0),
    "optim.momentum": Rule("a number in [0, 1)", lambda v: _num(v) and 0 <= v < 1),
    "optim.scheduler": _choice("cosine", "none"),
    "model.name": _choice("linear", "mlp"),
    "model.hidden": _int_list(1),
    "model.activation": _choice("relu", "gelu", "tanh"),
    "model.dropout": _frac(),
    "data.n_train": _int(2),
    "data.n_val": _int(1),
    "data.n_test": _int(1),
    "data.n_features": _int(1),
    "data.bias": Rule("a finite number", _num),
    "data.noise_std": _ge(0),
    "data.outlier_fraction": _frac(),
    "data.outlier_scale": _ge(0),
    "data.outlier_mode": _choice("one_sided", "symmetric"),
    "data.leverage_fraction": _frac(hi_open=False),
    "data.leverage_scale": _gt(0),
    "tracking.experiment": Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())),
}


def _get(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    return True, node


def loss_params(cfg: DictConfig) -> dict[str, Any]:
    """The loss group's keyword arguments: every key but ``name``."""
    params = OmegaConf.to_container(cfg.loss, resolve=True)
    assert isinstance(params, dict)
    params.pop("name", None)
    return params


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first key whose value cannot work, or for a loss that does not fit the task."""
    for key, rule in RULES.items():
        present, value = _get(cfg, key)
        if present and not rule.ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: {key} must be {rule.allowed}")

    task = task_of_data(cfg.data.name)
    name = cfg.loss.name
    try:
        spec = losses.spec(name)
        spec.check_params(loss_params(cfg))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if task not in spec.tasks:
        raise ConfigError(
            f"loss={name} does not fit data={cfg.data.name} (task '{task}'): it serves {list(spec.tasks)}; "
            f"losses for '{task}': {losses.available(task)}"
        )
