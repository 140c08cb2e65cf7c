"""Which part of the training data the loss spends its gradient on (``trainer.grad_share=true``).

Per epoch, for each group of training examples the data knows (outliers and clean targets, positives and negatives,
flipped and clean labels, foreground and background pixels: :meth:`harness.tasks.base.Task.gradient_groups`), the
share of the gradient of the batch loss with respect to the model's outputs that the group's examples (or pixels)
receive: ``sum |dL/d output|`` over the group's elements divided by the sum over all, accumulated over the epoch's
steps (metrics ``grad_share/<group>``; the groups partition the data, so the shares add up to 1, except for
elements in no group, such as void pixels). Read from ``output.grad`` after the backward pass the step makes anyway:
no per-parameter work.
"""

from __future__ import annotations

import torch
from torch import Tensor

PREFIX = "grad_share/"  # a diagnostic: where the gradient goes, neither better nor worse when higher


def per_element(grad: Tensor, mask: Tensor) -> Tensor:
    """``|grad|`` summed down to the shape of a batch's group ``mask``: per example (``mask`` of shape ``[B]``:
    every output of the example) or per target element (``mask`` shaped like the target, ``[B, *S]``: summed over
    the output's channel dimension when the output is ``[B, C, *S]``)."""
    g = grad.detach().abs().float()
    if mask.dim() == 1:
        return g.reshape(len(g), -1).sum(1)
    if g.shape == mask.shape:
        return g
    if g.dim() == mask.dim() + 1 and g.shape[2:] == mask.shape[1:]:
        return g.sum(1)
    raise ValueError(f"grad_share: outputs of shape {tuple(grad.shape)} do not match group masks of shape {tuple(mask.shape)}")


class GradShare:
    """Accumulates each group's ``sum |dL/d output|`` over an epoch's steps (on the training device: no host sync
    per step). ``groups``: name -> boolean mask over the training set (``[N]`` or the targets' shape)."""

    def __init__(self, groups: dict[str, Tensor]) -> None:
        self.groups = groups
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.total: Tensor | None = None

    def add(self, grad: Tensor, idx: Tensor, scale: float | Tensor = 1.0) -> None:
        """Add a step's output gradient ``grad`` for the training examples ``idx``; ``scale``: the loss scale it
        carries (a ``GradScaler``'s), divided out. A step whose gradient is not finite (a step the scaler skips)
        adds nothing, decided on the device (no host sync)."""
        g = grad.detach().float() / scale
        total = g.abs().sum()
        finite = torch.isfinite(total)
        for name, mask in self.groups.items():
            m = mask[idx]
            part = torch.where(finite, (per_element(g, m) * m).sum(), 0.0)
            self.sums[name] = self.sums.get(name, 0) + part
        total = torch.where(finite, total, 0.0)
        self.total = total if self.total is None else self.total + total

    def epoch(self) -> dict[str, float]:
        """``grad_share/<group>`` for the epoch so far (0 where the whole gradient was 0), then start over."""
        total = float(self.total) if self.total is not None else 0.0
        shares = {f"{PREFIX}{name}": (float(self.sums[name]) / total if total > 0 else 0.0) for name in self.groups}
        self.reset()
        return shares

    def fractions(self) -> dict[str, float]:
        """Each group's share of the training elements: what its gradient share would be if every element got the
        same gradient."""
        return {name: float(mask.float().mean()) for name, mask in self.groups.items()}


def to_device(groups: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {name: mask.to(device) for name, mask in groups.items()}


def stacked_per_element(grad: Tensor, mask: Tensor) -> Tensor:
    """:func:`per_element` for each member of a stack: ``grad`` ``[M, B, ...]``, ``mask`` ``[M, B]`` or ``[M, B, *S]``."""
    return per_element(grad.flatten(0, 1), mask.flatten(0, 1)).unflatten(0, grad.shape[:2])


class StackedGradShare:
    """:class:`GradShare` for the members of a stack (:mod:`harness.vectorize`): ``groups[i]`` are member ``i``'s
    groups (the same names and mask shapes for every member); each step adds the stacked output gradient
    ``[M, B, ...]`` of the batches ``idx`` ``[M, B]``, and :meth:`epoch` gives each member's shares."""

    def __init__(self, groups: list[dict[str, Tensor]], device: torch.device) -> None:
        self.names = list(groups[0])
        self.masks = torch.stack([torch.stack([g[name] for g in groups]) for name in self.names], -1).float().to(device)  # [M, N, ..., G]
        self.reset()

    def reset(self) -> None:
        self.sums: Tensor | None = None  # [M, G]
        self.total: Tensor | None = None  # [M]

    def add(self, grad: Tensor, idx: Tensor) -> None:
        members = len(grad)
        rows = torch.arange(members, device=grad.device)[:, None]
        masks = self.masks[rows, idx]  # [M, B, ..., G]
        per = stacked_per_element(grad.detach().float(), masks[..., 0])  # [M, B, ...]: |dL/d output| per masked element
        total = per.reshape(members, -1).sum(1)
        sums = (per.unsqueeze(-1) * masks).reshape(members, -1, len(self.names)).sum(1)
        finite = torch.isfinite(total)
        sums, total = torch.where(finite[:, None], sums, 0.0), torch.where(finite, total, 0.0)
        self.sums = sums if self.sums is None else self.sums + sums
        self.total = total if self.total is None else self.total + total

    def epoch(self) -> list[dict[str, float]]:
        """Each member's ``grad_share/<group>`` for the epoch so far (as :meth:`GradShare.epoch`), then start over."""
        assert self.sums is not None and self.total is not None
        sums, totals = self.sums.tolist(), self.total.tolist()
        self.reset()
        return [
            {f"{PREFIX}{name}": (s / total if total > 0 else 0.0) for name, s in zip(self.names, row)}
            for row, total in zip(sums, totals)
        ]
