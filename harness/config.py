"""Validate a composed config before any data is built or any run is created.

Each rule names a dotted key, the values it allows and, when broken, raises :class:`ConfigError` with a message
that names the key, the value given and what is allowed. Rules for keys a config does not have are skipped, so
one table serves every ``data``/``model``/``optim`` choice. Option lists (models, optimisers, datasets) come from
their registries. :func:`validate` checks what the config alone decides; :func:`validate_data` what needs the
built data (its class count, target range), still before any run is created.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

import losses

from . import models, optim, tasks
from .data import DataBundle, get_dataset
from .errors import ConfigError
from .loss_config import loss_name, loss_params, loss_spec, missing_noise_matrix, target_of
from .user_code import import_modules, import_object

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32", "bf16", "16-mixed")


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


def _registered(available: Callable[[], list[str]]) -> Rule:
    return Rule(f"one of {available()}", lambda v: v in available())


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
    "trainer.progress": _choice(True, False, "auto"),
    "trainer.threads": Rule("null or an integer >= 1", lambda v: v is None or _int(1).ok(v)),
    "trainer.grad_share": _choice(True, False),
    "trainer.keep_best": _choice(True, False),
    "trainer.vectorize": _choice(True, False),
    "trainer.max_stack": _int(2),
    "optim.name": Rule(f"one of {optim.available()}", lambda v: v in optim.available()),
    "optim.lr": _gt(0),
    "optim.weight_decay": _ge(0),
    "optim.momentum": Rule("a number in [0, 1)", lambda v: _num(v) and 0 <= v < 1),
    "optim.scheduler": _choice("cosine", "none"),
    "model.hidden": Rule("an integer >= 1 (cnn) or a list of them (mlp)", lambda v: _int(1).ok(v) or _int_list(1).ok(v)),
    "model.channels": Rule("a non-empty list of integers >= 1", lambda v: _int_list(1).ok(v) and len(v) > 0),
    "model.activation": _choice("relu", "gelu", "tanh"),
    "model.head": _choice("linear", "cosine"),
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
    "data.num_classes": Rule("null (read from the data) or an integer >= 2", lambda v: v is None or _int(2).ok(v)),
    "data.channels": _choice(1, 3),
    "data.standardize_target": _choice(True, False),
    "data.shapes_per_image": _int(1),
    "data.fg_fraction": Rule("a number in (0, 0.6]", lambda v: _num(v) and 0 < v <= 0.6),
    "data.contrast": _ge(0),
    "data.texture": _ge(0),
    "data.max_images": Rule("null or an integer >= 2", lambda v: v is None or _int(2).ok(v)),
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


def task_of(cfg: DictConfig) -> tasks.Task:
    """The task the configured data poses."""
    try:
        return tasks.of_config(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def num_classes_of(cfg: DictConfig) -> int | None:
    """Classes known from the config alone (2 for binary data, ``data.num_classes`` where the data has that key),
    else ``None`` until the data is built."""
    return task_of(cfg).classes_in_config(cfg.data)


def check_compatible(spec: losses.LossSpec, cfg: DictConfig, num_classes: int | None) -> None:
    """:class:`ConfigError` naming the losses that fit, if ``spec`` cannot train the configured data."""
    task = task_of(cfg)
    reason = task.incompatibility(spec, num_classes)
    if reason:
        fitting = [n for n in losses.available() if task.incompatibility(losses.spec(n), num_classes) is None]
        raise ConfigError(f"loss={spec.name} does not fit data={cfg.data.name} (task '{task.name}'): {reason}; losses that fit: {fitting}")


def _check_class_weights(cfg: DictConfig, classes: int | None) -> None:
    weights = cfg.data.get("class_weights")
    if OmegaConf.is_list(weights) and classes is not None and len(weights) != classes:
        raise ConfigError(f"data.class_weights has {len(weights)} values but data={cfg.data.name} has {classes} classes")


def _check_model(cfg: DictConfig, task: tasks.Task, input_shape: tuple[int, ...] | None) -> None:
    """:class:`ConfigError` for a built-in model that cannot serve ``task`` (on inputs of ``input_shape``, once the
    data is built), or a user's ``model._target_`` that does not import."""
    try:
        spec = models.model_spec(cfg.model)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if spec is None:
        import_object(models.target_of(cfg.model), "model._target_")
        return
    reason = task.model_incompatibility(spec, input_shape)
    if reason:
        raise ConfigError(f"model={spec.name} does not fit data={cfg.data.name} (task '{task.name}'): {reason}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first key whose value cannot work, for a loss or model that does not fit
    the task, or for class weights of the wrong length, before anything is built."""
    for key, rule in RULES.items():
        present, value = _get(cfg, key)
        if present and not rule.ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: {key} must be {rule.allowed}")
    import_modules(cfg)
    try:
        problem = get_dataset(cfg.data.name).check(cfg.data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if problem:
        raise ConfigError(problem)
    task = task_of(cfg)
    spec = loss_spec(cfg)
    if not target_of(cfg):
        try:
            spec.check_params(loss_params(cfg))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if target_of(cfg) and spec.target not in task.target_formats:
        raise ConfigError(
            f"loss.target={spec.target} is not allowed for data={cfg.data.name} (task '{task.name}'): the task gives "
            f"targets as one of {list(task.target_formats)}"
        )
    classes = num_classes_of(cfg)
    check_compatible(spec, cfg, classes)
    problem = missing_noise_matrix(spec, cfg)
    if problem:
        raise ConfigError(problem)
    _check_model(cfg, task, None)
    if not task.classification and cfg.data.get("class_weights") is not None:
        raise ConfigError(f"data.class_weights applies to classification data, not data={cfg.data.name}")
    _check_class_weights(cfg, classes)
    if str(cfg.trainer.get("precision", "32")) == "16-mixed" and cfg.trainer.device == "cpu":
        raise ConfigError("trainer.precision=16-mixed needs a CUDA device; on CPU use 32 or bf16")


def validate_data(cfg: DictConfig, data: DataBundle) -> None:
    """What only the built data can tell: the loss against its class count and target range, the model against
    its input shape, class weights against its classes."""
    task = task_of(cfg)
    spec = loss_spec(cfg)
    check_compatible(spec, cfg, data.num_classes)
    _check_model(cfg, task, data.input_shape)
    _check_class_weights(cfg, data.num_classes)
    if cfg.trainer.get("grad_share") and not task.gradient_groups(data):
        raise ConfigError(
            f"trainer.grad_share=true: data={data.name} ({task.name}) has no groups of training examples to share the "
            "gradient between; groups come with outliers (data=outliers), positives/negatives (binary tasks), flipped "
            "labels (data.label_noise > 0) and foreground/background pixels (segmentation)"
        )
    if spec.target_min is not None and not task.classification:
        if "target_scale" in data.info:
            raise ConfigError(
                f"loss={loss_name(cfg)} needs targets >= {spec.target_min:g} in their own units, but data={data.name} "
                "trains on standardised targets: set data.standardize_target=false"
            )
        lowest = float(data.train.y.min())
        if lowest < spec.target_min:
            fitting = [n for n in losses.available(task.name) if losses.spec(n).target_min is None]
            raise ConfigError(
                f"loss={loss_name(cfg)} needs targets >= {spec.target_min:g} (counts or positive quantities) but "
                f"data={data.name} has training targets down to {lowest:.3g}; losses that fit: {fitting}"
            )
