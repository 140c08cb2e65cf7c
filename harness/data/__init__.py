"""Datasets as in-memory tensors, one registered builder each: ``build_data(cfg.data, seed)`` returns a
:class:`DataBundle` (see :mod:`.registry` for adding one)."""

from __future__ import annotations

from .bundle import DataBundle, DataError, Split
from .registry import DatasetSpec, available, build_data, get_dataset, register_dataset
from . import folders, images, outliers, segmentation, table, tabular  # noqa: E402,F401 - register the built-in datasets

__all__ = ["DataBundle", "DataError", "DatasetSpec", "Split", "available", "build_data", "get_dataset", "register_dataset"]
