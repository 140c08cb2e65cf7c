"""Datasets as in-memory tensors: ``build_data(cfg.data, seed)`` returns a :class:`DataBundle`."""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from .bundle import DataBundle, Split
from .outliers import make_outliers

BUILDERS: dict[str, Callable[[DictConfig, int], DataBundle]] = {
    "outliers": make_outliers,
}


def build_data(cfg: DictConfig, seed: int) -> DataBundle:
    """Build the dataset named ``cfg.name`` on CPU; everything random is derived from ``seed``."""
    if cfg.name not in BUILDERS:
        raise ValueError(f"data.name={cfg.name!r} is unknown; valid: {sorted(BUILDERS)}")
    return BUILDERS[cfg.name](cfg, seed)


__all__ = ["BUILDERS", "DataBundle", "Split", "build_data"]
