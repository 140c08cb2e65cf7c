"""Losses a user brings: an nn.Module, a plain function, and broken ones the harness must refuse."""

import torch
from torch import nn


class SquaredError(nn.Module):
    """Mean of ``scale * (input - target)**2``: with scale 1, the same loss as the built-in ``mse``."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.scale * (input - target).square().mean()


def absolute_error(input: torch.Tensor, target: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    return (input - target).abs().pow(power).mean()


def per_example(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (input - target).square()  # not reduced: refused


def detached(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (input - target).square().mean().detach()  # no gradient: refused
