"""The ``loss`` config group: a registered loss by name (``loss=huber``), or a user's own (``loss._target_``).

A user's loss is any ``nn.Module`` class or callable ``(input, target) -> scalar tensor``, named by its dotted path:
``loss._target_=my_pkg.losses.MyLoss``. Its other config keys are its keyword arguments, except ``task`` (the task
it serves; default: the data's task) and ``target`` (the target format it takes, one of ``losses.TARGETS``; default:
the task's own, see ``harness.tasks``). A loss registered into ``losses`` from a user's package (``@losses.register``)
is used by name like a built-in once its module is imported (``imports=[my_pkg.losses]``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

import losses
from losses import LossSpec

from .errors import ConfigError

USER_KEYS = ("name", "_target_", "task", "target")  # config keys that are not the loss's keyword arguments


def target_of(cfg: DictConfig) -> str | None:
    """The dotted path of a user's loss (``loss._target_``), or ``None`` for a registered loss."""
    return cfg.loss.get("_target_") or None


def loss_name(cfg: DictConfig) -> str:
    """The loss's name as tagged: the registered name, or the last part of a user's dotted path."""
    target = target_of(cfg)
    return target.rsplit(".", 1)[-1] if target else str(cfg.loss.name)


def loss_params(cfg: DictConfig) -> dict[str, Any]:
    """The loss's keyword arguments: every key of the ``loss`` group but ``name``, ``_target_``, ``task``, ``target``."""
    params = OmegaConf.to_container(cfg.loss, resolve=True)
    assert isinstance(params, dict)
    for key in USER_KEYS:
        params.pop(key, None)
    return params


def import_object(path: str, key: str) -> Any:
    """The object at dotted ``path`` (``pkg.module.Name``); :class:`ConfigError` names ``key``, the path and why."""
    module_path, _, attr = path.rpartition(".")
    if not module_path:
        raise ConfigError(f"{key}={path!r} is not a dotted path to a class or function (pkg.module.Name)")
    try:
        module = importlib.import_module(module_path)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see
        raise ConfigError(f"{key}={path!r} does not import: {type(err).__name__}: {err}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"{key}={path!r} does not import: module '{module_path}' has no attribute '{attr}'")
    return getattr(module, attr)


def split_kwargs(obj: Callable[..., Any], kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """The keys of ``kwargs`` that ``obj``'s signature takes (all of them if it takes ``**kwargs``). A ``_target_``
    set on top of a built-in option leaves that option's keys in the group (``model.hidden`` of ``model=mlp``);
    the ones the target does not take are left out, and a note on stderr names them."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    left_out = sorted(k for k in kwargs if k not in params)
    if left_out:
        print(f"note: {where} takes no {', '.join(left_out)}; left out", file=sys.stderr, flush=True)
    return {k: v for k, v in kwargs.items() if k in params}


def import_modules(cfg: DictConfig) -> None:
    """Import the modules listed in ``imports`` (a user's package that registers losses, datasets or models)."""
    for path in cfg.get("imports") or []:
        try:
            importlib.import_module(str(path))
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"imports: module {str(path)!r} does not import: {type(err).__name__}: {err}") from None


class UserLoss(losses.Loss):
    """A user's loss wrapped in the registry's module interface: ``forward(input, target)`` calls it."""

    def __init__(self, loss: Callable[..., Tensor]) -> None:
        nn.Module.__init__(self)
        self.params = {}
        self.loss = loss  # an nn.Module is registered as a submodule: .to(device) moves it, its parameters train

    def forward(self, input: Tensor, target: Tensor | None = None, **overrides: Any) -> Tensor:
        return self.loss(input, target, **overrides)


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
    return LossSpec(name=loss_name(cfg), fn=obj, module=UserLoss, tasks=(str(serves),), input="logits", target=target)


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
    try:
        loss = obj(**params) if inspect.isclass(obj) else functools.partial(obj, **params) if params else obj
    except (TypeError, ValueError) as err:  # wrong keywords, or the loss's own argument checks
        raise ConfigError(f"loss._target_={spec.name}: its arguments {params} do not fit: {type(err).__name__}: {err}") from None
    return UserLoss(loss)
