"""Dataset registry: each dataset registers its builder once, with the task it poses.

    @register_dataset("outliers", task="regression")
    def make_outliers(cfg: DictConfig, seed: int) -> DataBundle: ...

A builder takes the ``data`` config group and the seed and returns a :class:`DataBundle` on the CPU, which carries
what the rest of the harness reads from the data: class count, input shape, class counts, provenance. A dataset
whose task depends on its config (``data=table data.task=binary``) registers ``task=None`` and reads
``data.task``. Add a dataset: one builder module that registers it, and one ``conf/data/<name>.yaml`` with
``name: <name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from omegaconf import DictConfig

from .bundle import DataBundle

Builder = Callable[[DictConfig, int], DataBundle]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    builder: Builder
    task: str | None  # None: the config's data.task says
    limits: Callable[[DictConfig], str | None] | None = None

    def check(self, cfg: DictConfig) -> str | None:
        """What is wrong with this dataset's config (the ``data`` group) before anything is built, or ``None``."""
        return self.limits(cfg) if self.limits is not None else None

    def task_of(self, cfg: DictConfig) -> str:
        """The task this dataset poses with config ``cfg`` (the ``data`` group)."""
        if self.task is not None:
            return self.task
        task = cfg.get("task")
        if task is None:
            raise ValueError(f"data={self.name} needs data.task (regression, binary or multiclass)")
        return str(task)


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str, *, task: str | None, limits: Callable[[DictConfig], str | None] | None = None
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` as dataset ``name`` (``data.name``) posing ``task``; ``limits(cfg)`` says
    what this dataset cannot do with a config (one line naming the key and what is allowed), checked before any
    data is built."""

    def decorate(builder: Builder) -> Builder:
        _DATASETS[name] = DatasetSpec(name, builder, task, limits)
        return builder

    return decorate


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name``; ``ValueError`` lists the valid ones."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise ValueError(f"data.name={name!r} is unknown; valid: {sorted(_DATASETS)}") from None


def available() -> list[str]:
    return sorted(_DATASETS)


def build_data(cfg: DictConfig, seed: int) -> DataBundle:
    """Build the dataset named ``cfg.name`` on CPU; everything random is derived from ``seed``."""
    spec = get_dataset(cfg.name)
    data = spec.builder(cfg, seed)
    task = spec.task_of(cfg)
    assert data.task == task, f"data={cfg.name} built a {data.task} bundle, registered for {task}"
    return data
