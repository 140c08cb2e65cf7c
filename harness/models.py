"""Model registry: every model maps a batch to raw outputs (values or logits); the loss decides any activation.

A built-in model registers its builder ``(cfg, input_shape, num_outputs) -> nn.Module`` with :func:`register_model`,
saying whether it emits per-pixel outputs (masks) and which input rank it needs; its ``conf/model/<name>.yaml``
holds ``name`` and its keys. A user's model is ``model._target_=pkg.module.Net``: a class (or function) called with
the config's other keys and ``input_shape`` (a tuple, e.g. ``(1, 28, 28)``) and ``num_outputs`` (an int).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
Builder = Callable[[DictConfig, tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """``per_pixel``: emits one output per pixel (segmentation). ``input_rank``: the input rank it needs (3 for
    ``(C, H, W)`` images), ``None`` for any."""

    name: str
    build: Builder
    per_pixel: bool = False
    input_rank: int | None = None
    input_kind: str = ""


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, per_pixel: bool = False, input_rank: int | None = None, input_kind: str = "") -> Callable[[Builder], Builder]:
    """Decorator registering ``build(cfg, input_shape, num_outputs)`` as ``model=<name>``."""

    def decorate(build: Builder) -> Builder:
        _MODELS[name] = ModelSpec(name, build, per_pixel, input_rank, input_kind)
        return build

    return decorate


def available() -> list[str]:
    return sorted(_MODELS)


def target_of(cfg: DictConfig) -> str | None:
    """The dotted path of a user's model (``model._target_``), or ``None`` for a built-in."""
    return cfg.get("_target_") or None


def model_spec(cfg: DictConfig) -> ModelSpec | None:
    """The spec of the configured built-in model, or ``None`` for a user's ``_target_`` model (whose output is
    checked by a forward pass instead)."""
    if target_of(cfg):
        return None
    if not cfg.get("name"):
        raise ValueError("the model group has neither name (a built-in model) nor _target_ (a model of yours); check its YAML")
    if cfg.name not in _MODELS:
        raise ValueError(f"model.name={cfg.name!r} is unknown; valid: {available()}")
    return _MODELS[cfg.name]


def model_name(cfg: DictConfig) -> str:
    """The model's name as tagged: the built-in's name, or a user model's class name."""
    target = target_of(cfg)
    return target.rsplit(".", 1)[-1] if target else str(cfg.name)


def build_model(cfg: DictConfig, data: Any, outputs: int) -> nn.Module:
    """Build the configured model for ``data``'s input shape (a :class:`DataBundle` or the shape itself) with
    ``outputs`` outputs; its initial weights come from the global torch seed."""
    input_shape = tuple(getattr(data, "input_shape", data))
    target = target_of(cfg)
    if target:
        from .user_code import import_object, one_line, split_kwargs

        kwargs = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(kwargs, dict)
        for key in ("name", "_target_", "imports"):
            kwargs.pop(key, None)
        obj = import_object(target, "model._target_")
        kwargs = split_kwargs(obj, {**kwargs, "input_shape": tuple(input_shape), "num_outputs": outputs}, f"model._target_={target}")
        try:
            return obj(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model._target_={target}: its arguments {kwargs} do not fit: {type(err).__name__}: {one_line(err)}") from None
    spec = model_spec(cfg)
    assert spec is not None
    return spec.build(cfg, tuple(input_shape), outputs)


class CosineLinear(nn.Linear):
    """Cosine classifier: the cosine similarity of the input with each class's weight vector, in [-1, 1], no bias
    (LDAM's ``NormedLinear``, Cao et al. 2019); a margin loss then scales it (``ldam``'s ``s``)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(nn.functional.normalize(x, dim=-1), nn.functional.normalize(self.weight, dim=-1))


HEADS = {"linear": nn.Linear, "cosine": CosineLinear}


def head_layer(head: str, in_features: int, outputs: int) -> nn.Module:
    """The last layer: ``linear`` (logits) or ``cosine`` (:class:`CosineLinear`)."""
    if head not in HEADS:
        raise ConfigError(f"model.head={head!r} is unknown; valid: {sorted(HEADS)}")
    return HEADS[head](in_features, outputs)


def mlp(in_features: int, hidden: list[int], outputs: int, activation: str, dropout: float, head: str = "linear") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(head_layer(head, width, outputs))
    return nn.Sequential(*layers)


def cnn(in_shape: tuple[int, ...], outputs: int, channels: list[int], hidden: int, dropout: float, head: str = "linear") -> nn.Sequential:
    """Conv(3x3)-ReLU-MaxPool blocks, then a hidden linear layer: about 94k parameters for 28x28 inputs with the
    defaults (channels [32, 64], hidden 24)."""
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for width in channels:
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = width, h // 2, w // 2
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * h * w, hidden), nn.ReLU(), head_layer(head, hidden, outputs)]
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


@register_model("linear")
def _linear(cfg: DictConfig, shape: tuple[int, ...], outputs: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), outputs))


@register_model("mlp")
def _mlp(cfg: DictConfig, shape: tuple[int, ...], outputs: int) -> nn.Module:
    return mlp(math.prod(shape), list(cfg.hidden), outputs, cfg.activation, cfg.dropout, cfg.get("head", "linear"))


@register_model("cnn", input_rank=3, input_kind="(C, H, W images; use model=mlp or model=linear for tabular data)")
def _cnn(cfg: DictConfig, shape: tuple[int, ...], outputs: int) -> nn.Module:
    return cnn(shape, outputs, list(cfg.channels), cfg.hidden, cfg.dropout, cfg.get("head", "linear"))


@register_model("unet", per_pixel=True, input_rank=3, input_kind="(C, H, W images)")
def _unet(cfg: DictConfig, shape: tuple[int, ...], outputs: int) -> nn.Module:
    return UNet(shape[0], outputs, list(cfg.channels))

