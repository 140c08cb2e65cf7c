"""The container every dataset builder returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor


class DataError(RuntimeError):
    """A dataset cannot be built (missing files and no network, say); raised before any run is created."""


@dataclass(frozen=True)
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class DataBundle:
    """Train/val/test tensors plus what models, losses and metrics need to know about them.

    ``task``: regression | binary | multiclass | segmentation. ``num_classes``: classes including background
    (2 for binary tasks), ``None`` for regression. ``info`` holds dataset-specific facts (for ``outliers``:
    ``true_coef``, ``true_bias``, ``outlier_mask``).
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "DataBundle":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def class_counts(self) -> list[int]:
        """Training examples (pixels, for segmentation) per class."""
        assert self.num_classes is not None, "class counts need a classification task"
        return torch.bincount(self.train.y.reshape(-1).cpu(), minlength=self.num_classes).tolist()
