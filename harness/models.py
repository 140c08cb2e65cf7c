"""Models: every one maps a batch to raw outputs (values or logits); the loss decides any activation."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from .data import DataBundle

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
MODELS = ("linear", "mlp", "cnn", "unet")


def mlp(in_features: int, hidden: list[int], outputs: int, activation: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def cnn(in_shape: tuple[int, ...], outputs: int, channels: list[int], hidden: int, dropout: float) -> nn.Sequential:
    """Conv(3x3)-ReLU-MaxPool blocks, then a hidden linear layer: about 94k parameters for 28x28 inputs with the
    defaults (channels [32, 64], hidden 24)."""
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for width in channels:
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = width, h // 2, w // 2
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, outputs)]
    return nn.Sequential(*layers)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015): ``len(channels) - 1`` down/up levels with skip connections; input
    sides must be divisible by ``2**(len(channels) - 1)``. Defaults [16, 32, 64]: about 120k parameters."""

    def __init__(self, in_channels: int, outputs: int, channels: list[int]) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c = in_channels
        for width in channels:
            self.down.append(_double_conv(c, width))
            c = width
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for width in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c, width, 2, stride=2))
            self.merge.append(_double_conv(2 * width, width))
            c = width
        self.head = nn.Conv2d(c, outputs, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_model(cfg: DictConfig, data: DataBundle, outputs: int) -> nn.Module:
    """Build ``cfg.name`` for ``data``'s input shape with ``outputs`` outputs (init from the global torch seed)."""
    shape = data.input_shape
    if cfg.name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), outputs))
    if cfg.name == "mlp":
        return mlp(math.prod(shape), list(cfg.hidden), outputs, cfg.activation, cfg.dropout)
    if cfg.name == "cnn":
        return cnn(shape, outputs, list(cfg.channels), cfg.hidden, cfg.dropout)
    if cfg.name == "unet":
        return UNet(shape[0], outputs, list(cfg.channels))
    raise ValueError(f"model.name={cfg.name!r} is unknown; valid: {list(MODELS)}")


def model_fits(model: str, task: str, input_shape_rank: int) -> str | None:
    """Why ``model`` cannot serve ``task``, or ``None``."""
    if model == "unet" and task != "segmentation":
        return "unet outputs masks; it serves segmentation only"
    if task == "segmentation" and model != "unet":
        return "segmentation needs per-pixel outputs: use model=unet"
    if model == "cnn" and input_shape_rank != 3:
        return "cnn needs image inputs (C, H, W): use model=mlp or model=linear for tabular data"
    return None
