"""The loss as the harness uses it: shaped to the model's output by the task, given class weights.

Models emit logits (or raw values) and every loss applies its own activation, so "softmax before binary
cross-entropy" cannot happen; how labels meet each loss is the task's (``harness.tasks``, ``Task.prepare``).

Class weights (``data.class_weights``): ``balanced`` is ``n / (C n_c)`` (scikit-learn's), ``effective`` is
``(1 - beta) / (1 - beta**n_c)`` normalised to sum to ``C`` (Cui et al. 2019, ``data.cb_beta``), or a list. They
reach the loss as ``pos_weight = w1 / w0`` (bce, dice_bce), ``alpha = w1 / (w0 + w1)`` (binary focal), per-class
``weight`` (multiclass and multi-channel segmentation losses), or per-example ``weight = w[y]`` (other binary losses).
Losses that take ``class_counts`` (the long-tail ones, e.g. ``logit_adjusted_ce``) get the training class counts;
``forward_corrected_ce`` gets the noise matrix of ``data.label_noise``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

import losses
from losses import LossSpec
from losses.long_tail import effective_number_weights

from . import tasks
from .errors import ConfigError
from .loss_config import build_user_loss, loss_params, loss_spec, missing_noise_matrix, target_of
from .user_code import one_line


def class_weights(setting: Any, counts: list[int], beta: float) -> list[float] | None:
    """Per-class weights from training counts, per the ``data.class_weights`` setting."""
    if setting is None:
        return None
    c = len(counts)
    if setting == "balanced":
        total = sum(counts)
        return [total / (c * max(n, 1)) for n in counts]
    if setting == "effective":
        return effective_number_weights(counts, beta).tolist()
    weights = [float(w) for w in setting]
    if len(weights) != c:
        raise ConfigError(f"data.class_weights has {len(weights)} values but the data has {c} classes")
    return weights


@dataclass
class Criterion:
    """Callable ``criterion(output, labels)``: the task adapts output and labels to ``module``'s conventions."""

    module: losses.Loss
    spec: LossSpec
    task: tasks.Task
    num_outputs: int
    num_classes: int | None
    weights: list[float] | None = None
    weight_form: str | None = None
    weight_arg: float | None = None  # the loss's alpha or pos_weight that the class weights gave
    sample_weights: Tensor | None = None
    side: dict[str, Tensor] = field(default_factory=dict)

    def prepare(self, output: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return self.task.prepare(output, labels, self.num_outputs, self.spec.target)

    def __call__(self, output: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        """The loss of a batch; ``index``: the batch's positions in the training split, which select its rows of
        the precomputed ``side`` inputs (without it, a loss computes those itself)."""
        output, target = self.prepare(output, labels)
        extra = {k: v[index] for k, v in self.side.items()} if index is not None else {}
        if self.sample_weights is not None:
            extra["weight"] = self.sample_weights[labels].view_as(target)
        return self.module(output, target, **extra) if extra else self.module(output, target)

    def to(self, device: torch.device) -> "Criterion":
        self.module = self.module.to(device)
        if self.sample_weights is not None:
            self.sample_weights = self.sample_weights.to(device)
        self.side = {k: v.to(device) for k, v in self.side.items()}
        return self

    def logged_params(self) -> dict[str, str]:
        """The class weights used and their form; for weights passed as the loss's own ``alpha`` or ``pos_weight``,
        that argument's value as used (it replaces the config's, e.g. focal's ``alpha: 0.25``)."""
        if self.weights is None:
            return {}
        logged = {"class_weights.values": str([round(w, 6) for w in self.weights]), "class_weights.form": str(self.weight_form)}
        if self.weight_arg is not None:
            logged[f"loss.{self.weight_form}"] = f"{self.weight_arg:.6g}"
        return logged


def build_criterion(
    cfg: DictConfig,
    task: str | tasks.Task,
    num_classes: int | None,
    counts: list[int] | None,
    noise_matrix: Tensor | None = None,
    train_labels: Tensor | None = None,
) -> Criterion:
    """The configured loss for ``task``, with class weights from ``counts`` in the form the loss takes; the counts
    themselves and the data's label ``noise_matrix`` for the losses that take them; the task's side inputs (a
    boundary loss's distance maps) computed once from ``train_labels``, when given."""
    task = tasks.get(task) if isinstance(task, str) else task
    spec = loss_spec(cfg)
    outputs = task.num_outputs(spec, num_classes)
    params = {**task.loss_settings(spec, outputs), **loss_params(cfg)}
    setting = cfg.data.get("class_weights")
    if isinstance(setting, (list, tuple)) or OmegaConf.is_list(setting):
        setting = list(setting)
    weights = class_weights(setting, counts, cfg.data.get("cb_beta", 0.999)) if counts is not None else None
    form, sample_weights, weight_arg = None, None, None
    if weights is not None:
        w = torch.tensor(weights, dtype=torch.float32)
        if outputs > 1:
            if "weight" not in spec.params:
                raise ConfigError(f"loss={spec.name} takes no class weights; set data.class_weights=null")
            params["weight"], form = w, "weight"
        elif spec.binary_weight == "pos_weight":
            params["pos_weight"], form = w[1] / w[0], "pos_weight"
            weight_arg = float(params["pos_weight"])
        elif spec.binary_weight == "alpha":
            params["alpha"], form = float(w[1] / (w[0] + w[1])), "alpha"
            weight_arg = params["alpha"]
        elif "weight" in spec.params and spec.target != "mask":
            sample_weights, form = w, "per-example weight"
        else:
            raise ConfigError(f"loss={spec.name} takes no class weights in this form; set data.class_weights=null")
    if "class_counts" in spec.params and params.get("class_counts") is None:  # long-tail losses take the prior
        if counts is None:
            raise ConfigError(f"loss={spec.name} needs the training class counts, and this data has no classes")
        params["class_counts"] = torch.tensor(counts, dtype=torch.float32)
    if "noise_matrix" in spec.params and params.get("noise_matrix") is None:  # forward correction: the injected noise
        if noise_matrix is None:
            raise ConfigError(
                missing_noise_matrix(spec, cfg)
                or f"loss={spec.name} needs the label noise matrix, and data={cfg.data.name} gives none: set loss.noise_matrix"
            )
        params["noise_matrix"] = noise_matrix.float()
    elif "noise_matrix" in spec.params and not isinstance(params["noise_matrix"], Tensor):
        params["noise_matrix"] = torch.tensor(params["noise_matrix"], dtype=torch.float32)
    module = build_user_loss(spec, params) if target_of(cfg) else losses.get(spec.name, **params)
    side = task.side_inputs(spec, train_labels, outputs) if train_labels is not None else {}
    return Criterion(module, spec, task, outputs, num_classes, weights, form, weight_arg, sample_weights, side)


def probe(criterion: Criterion, model: torch.nn.Module, x: Tensor, y: Tensor) -> None:
    """Check a user's model and loss on two training examples before any run is created: the model's output has
    the shape the task needs, and the loss returns a scalar that carries a gradient. Eval mode, so no
    random numbers are drawn and no running statistics change."""
    was_training = model.training
    model.eval()
    try:
        out = model(x[:2])
        want = (len(x[:2]), criterion.num_outputs, *(y.shape[1:] if criterion.task.per_pixel else ()))
        if tuple(out.shape) != want:
            raise ConfigError(
                f"model {type(model).__name__} returned output of shape {tuple(out.shape)} for a batch of "
                f"{len(x[:2])}; the loss needs {want}"
            )
        value = criterion(out, y[:2])
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's model or loss failing on a real batch
        raise ConfigError(f"model and loss fail on a training batch: {type(err).__name__}: {one_line(err)}") from None
    finally:
        model.train(was_training)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ConfigError(f"loss={criterion.spec.name} must return a scalar tensor; it returned {shape}")
    if not value.requires_grad:
        raise ConfigError(f"loss={criterion.spec.name} returned a tensor without grad (detached, or computed outside autograd)")
