"""Optimiser registry: ``optim=<name>`` picks one of :data:`OPTIMIZERS` (each has ``conf/optim/<name>.yaml``)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch import nn

Factory = Callable[..., torch.optim.Optimizer]  # (params, cfg, **options such as fused) -> optimiser

OPTIMIZERS: dict[str, Factory] = {
    "adam": lambda params, cfg, **kw: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw),
    "adamw": lambda params, cfg, **kw: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw),
    "sgd": lambda params, cfg, **kw: torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **kw
    ),
}


def available() -> list[str]:
    return list(OPTIMIZERS)


def build_optimizer(cfg: DictConfig, model: nn.Module, loss: nn.Module | None = None, fused: bool = False) -> torch.optim.Optimizer:
    """The configured optimizer over the model's parameters and, in a group without weight decay, those the loss
    learns (e.g. ``barron_adaptive``'s alpha and scale). ``fused``: PyTorch's one-kernel update (the same
    elementwise rule, rounded in another order), for a few large tensors such as stacked members'."""
    params: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    learned = [p for p in loss.parameters() if p.requires_grad] if loss is not None else []
    if learned:
        params.append({"params": learned, "weight_decay": 0.0})
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={cfg.name!r} is unknown; valid: {available()}")
    return OPTIMIZERS[cfg.name](params, cfg, **({"fused": True} if fused else {}))


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """Cosine annealing to 0 over the run (``optim.scheduler=cosine``), or ``None``."""
    if cfg.get("scheduler", "none") == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None
