"""Which task each dataset poses, and the metrics logged for it (names from DESIGN.md)."""

from __future__ import annotations

import torch
from torch import Tensor

DATA_TASKS: dict[str, str] = {
    "outliers": "regression",
}


def task_of_data(name: str) -> str:
    if name not in DATA_TASKS:
        raise ValueError(f"data.name={name!r} is unknown; valid: {sorted(DATA_TASKS)}")
    return DATA_TASKS[name]


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """RMSE and MAE of predictions against targets."""
    err = pred.double() - target.double()
    return {"rmse": err.square().mean().sqrt().item(), "mae": err.abs().mean().item()}


def metrics(task: str, output: Tensor, target: Tensor) -> dict[str, float]:
    """Task metrics from raw model output on one split."""
    if task == "regression":
        return regression_metrics(output, target)
    raise ValueError(f"no metrics for task {task!r}")


# Validation metric watched in the progress bar, and whether lower is better.
MONITOR: dict[str, tuple[str, bool]] = {"regression": ("rmse", True)}


@torch.no_grad()
def predict(model: torch.nn.Module, x: Tensor, batch_size: int = 8192) -> Tensor:
    """Model output on ``x`` in eval mode, batched to bound memory; regression outputs are squeezed to ``(N,)``."""
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    return out.squeeze(-1) if out.ndim == 2 and out.shape[1] == 1 else out
