"""The loss as the harness uses it: checked against the task, shaped to the model's output, given class weights.

How labels meet each loss (the "common mistakes" are impossible by construction: models emit logits and every
loss applies its own activation):
- regression: one output, squeezed to ``(N,)``, against float targets.
- binary: one logit per example ``(N, 1)`` against float {0, 1} targets ``(N, 1)``.
- multiclass: ``C`` logits; integer targets for ``index`` losses, one-hot for ``one_hot`` losses.
- segmentation: ``(N, 1, H, W)`` logits against {0, 1} masks when the masks are binary and the loss takes binary
  masks; otherwise ``(N, C, H, W)`` logits against integer masks.

Class weights (``data.class_weights``): ``balanced`` is ``n / (C n_c)`` (scikit-learn's), ``effective`` is
``(1 - beta) / (1 - beta**n_c)`` normalised to sum to ``C`` (Cui et al. 2019, ``data.cb_beta``), or a list. They
reach the loss as ``pos_weight = w1 / w0`` (bce, dice_bce), ``alpha = w1 / (w0 + w1)`` (binary focal), per-class
``weight`` (multiclass and multi-channel segmentation losses), or per-example ``weight = w[y]`` (other binary losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

import losses
from losses import LossSpec

from .config import ConfigError, loss_params
from .data import DataBundle


def num_outputs(task: str, num_classes: int | None, spec: LossSpec) -> int:
    """Width of the model's output (channels, for segmentation) that ``spec`` needs on this task."""
    if task in ("regression", "binary"):
        return 1
    assert num_classes is not None
    if task == "segmentation" and num_classes == 2 and spec.target in ("binary", "mask"):
        return 1
    return num_classes


def incompatibility(spec: LossSpec, task: str, num_classes: int | None) -> str | None:
    """Why ``spec`` cannot train ``task`` (with ``num_classes``), or ``None`` if it can."""
    if task not in spec.tasks:
        return f"it serves {list(spec.tasks)}, not {task}"
    if task == "segmentation" and spec.target == "binary" and num_classes != 2:
        return f"it takes binary masks and this data has {num_classes} classes (set data.num_classes=2)"
    return None


def check_compatible(loss: str, data: str, task: str, num_classes: int | None) -> None:
    reason = incompatibility(losses.spec(loss), task, num_classes)
    if reason:
        fitting = [n for n in losses.available() if incompatibility(losses.spec(n), task, num_classes) is None]
        raise ConfigError(f"loss={loss} does not fit data={data} (task '{task}'): {reason}; losses that fit: {fitting}")


def check_targets(loss: str, data: DataBundle) -> None:
    """Refuse a loss defined only for targets >= ``spec.target_min`` on data whose training targets go below it."""
    spec = losses.spec(loss)
    if spec.target_min is None or data.task != "regression":
        return
    lowest = float(data.train.y.min())
    if lowest < spec.target_min:
        fitting = [n for n in losses.available("regression") if losses.spec(n).target_min is None]
        raise ConfigError(
            f"loss={loss} needs targets >= {spec.target_min:g} (counts or positive quantities) but data={data.name} "
            f"has training targets down to {lowest:.3g}; losses that fit: {fitting}"
        )


def class_weights(setting: Any, counts: list[int], beta: float) -> list[float] | None:
    """Per-class weights from training counts, per the ``data.class_weights`` setting."""
    if setting is None:
        return None
    c = len(counts)
    if setting == "balanced":
        total = sum(counts)
        return [total / (c * max(n, 1)) for n in counts]
    if setting == "effective":
        raw = [(1.0 - beta) / (1.0 - beta ** max(n, 1)) for n in counts]
        return [w * c / sum(raw) for w in raw]
    weights = [float(w) for w in setting]
    if len(weights) != c:
        raise ConfigError(f"data.class_weights has {len(weights)} values but the data has {c} classes")
    return weights


@dataclass
class Criterion:
    """Callable ``criterion(output, labels)``: adapts output and labels to ``module``'s conventions."""

    module: losses.Loss
    spec: LossSpec
    task: str
    num_outputs: int
    num_classes: int | None
    weights: list[float] | None = None
    weight_form: str | None = None
    sample_weights: Tensor | None = None

    def prepare(self, output: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if self.task == "regression":
            return output.squeeze(-1), labels
        if self.num_outputs == 1:  # binary labels or binary masks: one logit per example/pixel
            target = labels.unsqueeze(1).to(output.dtype if output.is_floating_point() else torch.float32)
            return output, target
        if self.spec.target == "one_hot":
            return output, F.one_hot(labels, self.num_outputs).movedim(-1, 1).float()
        return output, labels

    def __call__(self, output: Tensor, labels: Tensor) -> Tensor:
        output, target = self.prepare(output, labels)
        if self.sample_weights is not None:
            return self.module(output, target, weight=self.sample_weights[labels].view_as(target))
        return self.module(output, target)

    def to(self, device: torch.device) -> "Criterion":
        self.module = self.module.to(device)
        if self.sample_weights is not None:
            self.sample_weights = self.sample_weights.to(device)
        return self

    def logged_params(self) -> dict[str, str]:
        if self.weights is None:
            return {}
        return {"class_weights.values": str([round(w, 6) for w in self.weights]), "class_weights.form": str(self.weight_form)}


def build_criterion(cfg: DictConfig, task: str, num_classes: int | None, counts: list[int] | None) -> Criterion:
    """The configured loss for ``task``, with class weights from ``counts`` in the form the loss takes."""
    spec = losses.spec(cfg.loss.name)
    params = loss_params(cfg)
    outputs = num_outputs(task, num_classes, spec)
    setting = cfg.data.get("class_weights")
    if isinstance(setting, (list, tuple)) or OmegaConf.is_list(setting):
        setting = list(setting)
    weights = class_weights(setting, counts, cfg.data.get("cb_beta", 0.999)) if counts is not None else None
    form, sample_weights = None, None
    if weights is not None:
        w = torch.tensor(weights, dtype=torch.float32)
        if outputs > 1:
            if "weight" not in spec.params:
                raise ConfigError(f"loss={spec.name} takes no class weights; set data.class_weights=null")
            params["weight"], form = w, "weight"
        elif "pos_weight" in spec.params:
            params["pos_weight"], form = w[1] / w[0], "pos_weight"
        elif spec.name == "focal":
            params["alpha"], form = float(w[1] / (w[0] + w[1])), "alpha"
        elif "weight" in spec.params and spec.target != "mask":
            sample_weights, form = w, "per-example weight"
        else:
            raise ConfigError(f"loss={spec.name} takes no class weights on binary masks; set data.class_weights=null")
    module = losses.get(spec.name, **params)
    return Criterion(module, spec, task, outputs, num_classes, weights, form, sample_weights)
