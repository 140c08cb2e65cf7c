"""The ``loss`` config group: a registered loss by name (``loss=huber``), or a user's own (``loss._target_``).

A user's loss is any ``nn.Module`` class or callable ``(input, target) -> scalar tensor``, named by its dotted path:
``loss._target_=my_pkg.losses.MyLoss``. Its other config keys are its keyword arguments, except ``task`` (the task
it serves; default: the data's task) and ``target`` (the target format it takes, one of ``losses.TARGETS``; default:
the task's own, see ``harness.tasks``). A loss registered into ``losses`` from a user's package (``@losses.register``)
is used by name like a built-in once its module is imported (``imports=[my_pkg.losses]``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

import losses
from losses import LossSpec

from .errors import ConfigError
from .user_code import import_object, one_line, split_kwargs

USER_KEYS = ("name", "_target_", "task", "target", "imports")  # config keys that are not the loss's keyword arguments


def target_of(cfg: DictConfig) -> str | None:
    """The dotted path of a user's loss (``loss._target_``), or ``None`` for a registered loss."""
    return cfg.loss.get("_target_") or None


def loss_name(cfg: DictConfig) -> str:
    """The loss's name as tagged: the registered name, or the last part of a user's dotted path."""
    target = target_of(cfg)
    if target:
        return target.rsplit(".", 1)[-1]
    if not cfg.loss.get("name"):
        raise ConfigError("the loss group has neither name (a registered loss) nor _target_ (a loss of yours); check its YAML")
    return str(cfg.loss.name)


def loss_params(cfg: DictConfig) -> dict[str, Any]:
    """The loss's keyword arguments: every key of the ``loss`` group but ``name``, ``_target_``, ``task``, ``target``."""
    params = OmegaConf.to_container(cfg.loss, resolve=True)
    assert isinstance(params, dict)
    for key in USER_KEYS:
        params.pop(key, None)
    return params


class UserLoss(losses.Loss):
    """A user's loss in the registry's module interface: ``forward(input, target)`` calls it. A class is
    instantiated with its keyword arguments (an ``nn.Module`` becomes a submodule: ``.to(device)`` moves it, its
    parameters train); a function gets them at each call, tensors among them held as buffers so they move too."""

    def __init__(self, loss: Callable[..., Tensor], kwargs: dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        self.params = {k: v for k, v in (kwargs or {}).items() if not isinstance(v, Tensor)}
        for key, value in (kwargs or {}).items():
            if isinstance(value, Tensor):
                self.register_buffer(key, value)
        self.loss = loss

    def forward(self, input: Tensor, target: Tensor | None = None, **overrides: Any) -> Tensor:
        return self.loss(input, target, **self.params, **self._buffers, **overrides)


class UserLossSpec(LossSpec):
    """The spec of a user's loss: its keyword arguments are those of the class's ``__init__`` or, for a function,
    every parameter after ``(input, target)``."""

    @property
    def params(self) -> dict[str, Any]:
        items = list(inspect.signature(self.fn).parameters.items())
        if not inspect.isclass(self.fn):
            items = items[2:]
        return {n: p.default for n, p in items if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.binary_weight is None and "pos_weight" in self.params:  # torch's BCEWithLogitsLoss and its kin
            object.__setattr__(self, "binary_weight", "pos_weight")


def user_spec(cfg: DictConfig, task: str, default_target: str) -> LossSpec:
    """A spec for the user's ``loss._target_``: it serves ``loss.task`` (default ``task``) with target format
    ``loss.target`` (default ``default_target``)."""
    path = target_of(cfg)
    assert path is not None
    obj = import_object(path, "loss._target_")
    if not callable(obj):
        raise ConfigError(f"loss._target_={path!r} is not a class or function")
    target = cfg.loss.get("target") or default_target
    if target not in losses.TARGETS:
        raise ConfigError(f"loss.target={target!r} is not allowed: loss.target must be one of {list(losses.TARGETS)}")
    serves = cfg.loss.get("task") or task
    return UserLossSpec(name=loss_name(cfg), fn=obj, module=UserLoss, tasks=(str(serves),), input="logits", target=target)


def loss_spec(cfg: DictConfig) -> LossSpec:
    """The configured loss's spec: a registered loss's, or one made for a user's ``loss._target_`` (serving the
    data's task with the task's target format unless ``loss.task`` / ``loss.target`` say otherwise)."""
    from . import tasks

    try:
        task = tasks.of_config(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if target_of(cfg):
        return user_spec(cfg, task.name, task.target_format)
    try:
        return losses.spec(cfg.loss.name)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"loss={cfg.loss.name}: {err}") from None


def build_user_loss(spec: LossSpec, params: dict[str, Any]) -> UserLoss:
    """Instantiate a user's loss class with ``params`` (or bind them to a function)."""
    obj = spec.fn
    params = split_kwargs(obj, params, f"loss._target_={spec.name}")
    if not inspect.isclass(obj):
        return UserLoss(obj, params)
    try:
        return UserLoss(obj(**params))
    except (TypeError, ValueError) as err:  # wrong keywords, or the loss's own argument checks
        raise ConfigError(f"loss._target_={spec.name}: its arguments {params} do not fit: {type(err).__name__}: {one_line(err)}") from None


def missing_noise_matrix(spec: LossSpec, cfg: DictConfig) -> str | None:
    """Why a loss that takes ``noise_matrix`` (forward correction) cannot run with ``cfg``: neither
    ``loss.noise_matrix`` nor label noise the harness injects (``data.label_noise``), hence no matrix; else ``None``."""
    if "noise_matrix" not in spec.params or cfg.loss.get("noise_matrix") is not None or (cfg.data.get("label_noise") or 0) > 0:
        return None
    return (
        f"loss={spec.name} needs the label noise matrix: set data.label_noise (the harness then knows it) or "
        "loss.noise_matrix (C x C rows)"
    )
