"""Datasets as in-memory tensors: ``build_data(cfg.data, seed)`` returns a :class:`DataBundle`."""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from .bundle import DataBundle, DataError, Split
from .images import make_image_classification
from .outliers import make_outliers
from .segmentation import make_pets, make_shapes
from .tabular import make_breast_cancer, make_imbalanced

BUILDERS: dict[str, Callable[[DictConfig, int], DataBundle]] = {
    "outliers": make_outliers,
    "imbalanced": make_imbalanced,
    "breast_cancer": make_breast_cancer,
    "mnist": make_image_classification,
    "fashion_mnist": make_image_classification,
    "segmentation": make_shapes,
    "pets": make_pets,
}


def build_data(cfg: DictConfig, seed: int) -> DataBundle:
    """Build the dataset named ``cfg.name`` on CPU; everything random is derived from ``seed``."""
    if cfg.name not in BUILDERS:
        raise ValueError(f"data.name={cfg.name!r} is unknown; valid: {sorted(BUILDERS)}")
    return BUILDERS[cfg.name](cfg, seed)


__all__ = ["BUILDERS", "DataBundle", "DataError", "Split", "build_data"]
