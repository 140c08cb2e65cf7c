"""Models: every one maps a batch to raw outputs (values or logits); the loss decides any activation."""

from __future__ import annotations

import math

from omegaconf import DictConfig
from torch import nn

from .data import DataBundle

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def build_model(cfg: DictConfig, data: DataBundle) -> nn.Module:
    """Build ``cfg.name`` for ``data``'s input shape and number of outputs (init from the global torch seed)."""
    in_features = math.prod(data.input_shape)
    if cfg.name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, data.num_outputs))
    if cfg.name == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in cfg.hidden:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[cfg.activation]()]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = hidden
        layers.append(nn.Linear(width, data.num_outputs))
        return nn.Sequential(*layers)
    raise ValueError(f"model.name={cfg.name!r} is unknown; valid: ['linear', 'mlp']")
