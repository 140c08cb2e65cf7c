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
PRECISIONS = ("32", "bf16", "16-mixed")


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


def _class_weights(v: Any) -> bool:
    if v is None or v in ("balanced", "effective"):
        return True
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(w) and w > 0 for w in v)


RULES: dict[str, Rule] = {
    "seed": _int(0),
    "trainer.epochs": _int(1),
    "trainer.batch_size": _int(1),
    "trainer.device": _choice(*DEVICES),
    "trainer.precision": Rule(f"one of {list(PRECISIONS)}", lambda v: str(v) in PRECISIONS),
    "trainer.progress": _choice(True, False),
    "trainer.threads": Rule("null or an integer >= 1", lambda v: v is None or _int(1).ok(v)),
    "optim.name": _choice("adam", "adamw", "sgd"),
    "optim.lr": _gt(0),
    "optim.weight_decay": _ge(0),
    "optim.momentum": Rule("a number in [0, 1)", lambda v: _num(v) and 0 <= v < 1),
    "optim.scheduler": _choice("cosine", "none"),
    "model.name": _choice("linear", "mlp", "cnn", "unet"),
    "model.hidden": Rule("an integer >= 1 (cnn) or a list of them (mlp)", lambda v: _int(1).ok(v) or _int_list(1).ok(v)),
    "model.channels": Rule("a non-empty list of integers >= 1", lambda v: _int_list(1).ok(v) and len(v) > 0),
    "model.activation": _choice("relu", "gelu", "tanh"),
    "model.dropout": _frac(),
    "data.n_train": _int(2),
    "data.n_val": _int(1),
    "data.n_test": _int(1),
    "data.n_samples": _int(20),
    "data.n_features": _int(1),
    "data.n_informative": _int(1),
    "data.n_redundant": _int(0),
    "data.bias": Rule("a finite number", _num),
    "data.noise_std": _ge(0),
    "data.outlier_fraction": _frac(),
    "data.outlier_scale": _ge(0),
    "data.outlier_mode": _choice("one_sided", "symmetric"),
    "data.leverage_fraction": _frac(hi_open=False),
    "data.leverage_scale": _gt(0),
    "data.positive_fraction": Rule("a number in (0, 0.5]", lambda v: _num(v) and 0 < v <= 0.5),
    "data.class_sep": _gt(0),
    "data.flip_y": _frac(),
    "data.val_fraction": Rule("a number in (0, 0.5)", lambda v: _num(v) and 0 < v < 0.5),
    "data.test_fraction": Rule("a number in (0, 0.5)", lambda v: _num(v) and 0 < v < 0.5),
    "data.class_weights": Rule("null, balanced, effective or a list of positive numbers", _class_weights),
    "data.cb_beta": _frac(),
    "data.train_size": Rule("null or an integer >= 10", lambda v: v is None or _int(10).ok(v)),
    "data.imbalance_ratio": _ge(1),
    "data.label_noise": Rule("a number in [0, 0.9]", lambda v: _num(v) and 0 <= v <= 0.9),
    "data.download": _choice(True, False),
    "data.image_size": Rule("an integer >= 8 divisible by 4", lambda v: _int(8).ok(v) and v % 4 == 0),
    "data.num_classes": Rule("an integer in [2, 4]", lambda v: _int(2).ok(v) and v <= 4),
    "data.shapes_per_image": _int(1),
    "data.fg_fraction": Rule("a number in (0, 0.6]", lambda v: _num(v) and 0 < v <= 0.6),
    "data.contrast": _ge(0),
    "data.texture": _ge(0),
    "data.max_images": Rule("null or an integer >= 2", lambda v: v is None or _int(2).ok(v)),
    "tracking.experiment": Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())),
}

NUM_CLASSES = {"regression": None, "binary": 2, "multiclass": 10}


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


def num_classes_of(cfg: DictConfig) -> int | None:
    task = task_of_data(cfg.data.name)
    return cfg.data.num_classes if task == "segmentation" else NUM_CLASSES[task]


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first key whose value cannot work, for a loss or model that does not fit
    the task, or for class weights of the wrong length, before anything is built."""
    from .criterion import check_compatible
    from .models import model_fits

    for key, rule in RULES.items():
        present, value = _get(cfg, key)
        if present and not rule.ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: {key} must be {rule.allowed}")

    task = task_of_data(cfg.data.name)
    name = cfg.loss.name
    try:
        losses.spec(name).check_params(loss_params(cfg))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    classes = num_classes_of(cfg)
    check_compatible(name, cfg.data.name, task, classes)
    rank = 3 if task in ("multiclass", "segmentation") else 1
    reason = model_fits(cfg.model.name, task, rank)
    if reason:
        raise ConfigError(f"model={cfg.model.name} does not fit data={cfg.data.name} (task '{task}'): {reason}")
    weights = cfg.data.get("class_weights")
    if task == "regression" and weights is not None:
        raise ConfigError("data.class_weights applies to classification data, not data=outliers")
    if OmegaConf.is_list(weights) and len(weights) != classes:
        raise ConfigError(f"data.class_weights has {len(weights)} values but data={cfg.data.name} has {classes} classes")
    if str(cfg.trainer.get("precision", "32")) == "16-mixed" and cfg.trainer.device == "cpu":
        raise ConfigError("trainer.precision=16-mixed needs a CUDA device; on CPU use 32 or bf16")
