"""Task registry: regression, binary, multiclass and segmentation, one module each (see :mod:`.base`).

    from harness import tasks
    task = tasks.get("binary"); task.monitor, task.metrics, task.num_outputs(spec, 2)
"""

from __future__ import annotations

from typing import Any

import losses

from . import binary, multiclass, regression, segmentation  # noqa: F401 - registers the built-in tasks
from .base import Figures, Task, available, get, has_direction, lower_is_better, register


def of_config(cfg: Any) -> Task:
    """The task the configured data poses: its dataset's registration, or ``data.task`` for data that takes one."""
    from ..data import get_dataset

    return get(get_dataset(cfg.data.name).task_of(cfg.data))


def trainable_losses() -> list[str]:
    """Registered losses that serve a task the harness trains (the GAN losses serve none); each has a
    ``conf/loss/<name>.yaml``."""
    return [n for n in losses.available() if set(losses.spec(n).tasks) & set(available())]


__all__ = ["Figures", "Task", "available", "get", "has_direction", "lower_is_better", "of_config", "register",
           "trainable_losses"]
