"""The device boundary: where evaluation results leave the training device (DESIGN.md, "Device boundary").

Training and the forward passes of evaluation run on the chosen device. :func:`evaluate` is the one place where a
model's outputs and the split's targets cross to the CPU, once per evaluation, as an :class:`Evaluation`; metrics,
plots and artifacts below it take CPU tensors only and check so (:func:`require_host`), so a device tensor that
slips past the boundary fails on every machine with a message naming the caller, not only on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


class DeviceBoundaryError(RuntimeError):
    """A tensor reached CPU-only code (metrics, plots, artifacts) without passing :func:`evaluate`."""


def require_host(where: str, *tensors: Tensor) -> None:
    """Raise :class:`DeviceBoundaryError` unless every tensor lives on the CPU."""
    for t in tensors:
        if t.device.type != "cpu":
            raise DeviceBoundaryError(
                f"{where} got a tensor on {t.device}; results cross to the CPU only in harness.evaluation.evaluate"
            )


@dataclass(frozen=True)
class Evaluation:
    """A model's raw output on one split and that split's targets, both on the CPU.

    ``output``: float32 ``(N,)`` for a single output column, else ``(N, C, ...)``; ``target``: the split's labels.
    """

    output: Tensor
    target: Tensor

    def __post_init__(self) -> None:
        require_host("Evaluation", self.output, self.target)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Model output on ``x`` in eval mode, on ``x``'s device, batched to bound memory; a single output column is
    squeezed to ``(N,)``."""
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    return out.squeeze(-1) if out.ndim == 2 and out.shape[1] == 1 else out


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> Evaluation:
    """Forward ``x`` on its device, then move the output and the targets ``y`` to the CPU (the crossing)."""
    return Evaluation(predict(model, x, batch_size).cpu(), y.cpu())


@torch.no_grad()
def evaluate_stacked(forward: Callable[[Tensor], Tensor], x: Tensor, ys: list[Tensor], batch_size: int = 4096) -> list[Evaluation]:
    """:func:`evaluate` for the members of a stack (``harness.vectorize``): ``forward`` maps inputs ``[M, n, ...]`` to
    outputs ``[M, n, ...]`` (eval mode is the caller's), ``x`` holds each member's split, ``ys`` their targets; about
    ``batch_size`` examples per forward in all. One crossing to the CPU; member ``i``'s :class:`Evaluation`."""
    chunk = max(1, batch_size // len(ys))
    out = torch.cat([forward(x[:, i : i + chunk]).float() for i in range(0, x.shape[1], chunk)], dim=1)
    out = (out.squeeze(-1) if out.ndim == 3 and out.shape[2] == 1 else out).cpu()
    return [Evaluation(out[i], y.cpu()) for i, y in enumerate(ys)]


def to_host(t: Tensor) -> Tensor:
    """A detached CPU copy of a model tensor (e.g. a linear model's weights compared with the true ones)."""
    return t.detach().cpu()


def host_copy(t: Tensor) -> Tensor:
    """A detached CPU copy that never shares memory with ``t``, even when ``t`` is on the CPU (a kept model state)."""
    return t.detach().to("cpu", copy=True)
