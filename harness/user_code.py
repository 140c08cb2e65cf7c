"""Code that comes from a user's package: a class or function named by dotted path (``_target_``), the keyword
arguments it takes, and modules imported first so that they can register losses, datasets or models."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError


def one_line(text: object) -> str:
    """``text`` on one line (a user's exception message may hold newlines)."""
    return " ".join(str(text).split())


def import_object(path: str, key: str) -> Any:
    """The object at dotted ``path`` (``pkg.module.Name``); :class:`ConfigError` names ``key``, the path and why."""
    module_path, _, attr = path.rpartition(".")
    if not module_path:
        raise ConfigError(f"{key}={path!r} is not a dotted path to a class or function (pkg.module.Name)")
    try:
        module = importlib.import_module(module_path)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see
        raise ConfigError(f"{key}={path!r} does not import: {type(err).__name__}: {one_line(err)}") from None
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


def modules_to_import(cfg: DictConfig) -> list[str]:
    """The modules named by ``imports`` at the top of the config and in the ``loss``, ``model`` and ``data`` groups
    (each a dotted name or a list of them), so a user's loss YAML and data YAML can each bring their own."""
    names: list[str] = []
    for node in (cfg, cfg.get("loss"), cfg.get("model"), cfg.get("data")):
        value = node.get("imports") if isinstance(node, DictConfig) else None
        if value is None:
            continue
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        for name in [value] if isinstance(value, str) else value:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"imports={value!r} is not allowed: imports must be a module name or a list of them")
            if name not in names:
                names.append(name)
    return names


def import_modules(cfg: DictConfig) -> None:
    """Import the modules listed in ``imports`` (a user's package that registers losses, datasets or models)."""
    for name in modules_to_import(cfg):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"imports: module {name!r} does not import: {type(err).__name__}: {one_line(err)}") from None
