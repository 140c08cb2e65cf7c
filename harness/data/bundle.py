"""The container every dataset builder returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor


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

    ``info`` holds dataset-specific facts (for ``outliers``: ``true_coef``, ``true_bias``, ``outlier_mask``).
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_outputs: int
    info: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "DataBundle":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))
