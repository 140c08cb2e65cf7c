"""The container every dataset builder returns."""

from __future__ import annotations

import hashlib
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
    (2 for binary tasks), ``None`` for regression, read from the data by its builder. ``info`` holds
    dataset-specific facts (for ``outliers``: ``true_coef``, ``true_bias``, ``outlier_mask``). Provenance:
    ``source`` says where the data came from (a path, a library loader, "generated from the seed"); ``substitute``
    says what stands in for the requested dataset when it is not the real thing (a local subset, say), else ``None``.
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    substitute: str | None = None

    def to(self, device: torch.device | str) -> "DataBundle":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of every split's inputs and targets: equal data, equal digest."""
        h = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            for t in (split.x, split.y):
                t = t.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]

    def profile(self) -> dict[str, Any]:
        """Split sizes, input shape and (classification) training class counts."""
        out: dict[str, Any] = {"train": len(self.train), "val": len(self.val), "test": len(self.test), "input_shape": list(self.input_shape)}
        if self.num_classes:
            out["num_classes"] = self.num_classes
            out["class_counts"] = self.class_counts()
        return out

    def class_counts(self) -> list[int]:
        """Training examples (pixels, for segmentation) per class."""
        assert self.num_classes is not None, "class counts need a classification task"
        return torch.bincount(self.train.y.reshape(-1).cpu(), minlength=self.num_classes).tolist()
