"""The training loop: epochs of shuffled mini-batches drawn from tensors already on the device."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Callable, Iterable

import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from .criterion import Criterion
from .data import DataBundle
from .evaluation import evaluate, host_copy
from .grad_share import GradShare, to_device
from .optim import build_optimizer, build_scheduler


class NonFiniteLoss(RuntimeError):
    """The training loss, or the gradients of the step before, became NaN or infinite; ``epoch`` and ``step``
    (1-based, global) say where the non-finite values first appeared."""

    def __init__(self, epoch: int, step: int, value: float, in_gradients: bool = False) -> None:
        what = "gradients (the loss was finite; the update made the parameters non-finite)" if in_gradients else f"training loss ({value})"
        super().__init__(
            f"non-finite {what} at epoch {epoch}, step {step}; "
            "lower optim.lr, or check the loss and data for values it cannot take"
        )
        self.epoch, self.step, self.value, self.in_gradients = epoch, step, value, in_gradients


def non_finite(params: Iterable[torch.Tensor], epoch: int, step: int, steps_per_epoch: int, value: float) -> NonFiniteLoss:
    """The error for a non-finite loss at global ``step``: if the model's ``params`` are already non-finite, the
    previous step's gradients (finite loss, non-finite gradients) were the cause, and that step is reported."""
    if step > 1 and not all(bool(torch.isfinite(p).all()) for p in params):
        return NonFiniteLoss((step - 2) // steps_per_epoch + 1, step - 1, value, in_gradients=True)
    return NonFiniteLoss(epoch, step, value)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is not available raises ``ValueError``."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ValueError(f"trainer.device={name} but no {name.upper()} device is available; use auto or cpu")
    return torch.device(name)


EpochCallback = Callable[[int, dict[str, float]], None]


class BestEpoch:
    """The epoch with the best validation ``monitor`` so far (the first on ties; NaN never counts) and a CPU copy of
    the model's state then: early stopping's model, evaluated once at the end (``best/<metric>``)."""

    def __init__(self, monitor: str, lower_is_better: bool) -> None:
        self.monitor, self.lower = monitor, lower_is_better
        self.epoch: int | None = None
        self.value = math.nan
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, value: float, model: nn.Module) -> None:
        if math.isnan(value) or not (self.epoch is None or (value < self.value if self.lower else value > self.value)):
            return
        self.epoch, self.value = epoch, value
        self.state = {k: host_copy(v) for k, v in model.state_dict().items()}


def progress_mode(setting: bool | str) -> tuple[bool, bool]:
    """(progress bar, one plain line per epoch) for ``trainer.progress``: ``true`` the bar, ``false`` neither,
    ``auto`` the bar on a terminal and plain lines when stderr goes to a file or pipe (SLURM, nohup, CI logs)."""
    if setting == "auto":
        tty = sys.stderr.isatty()
        return tty, not tty
    return bool(setting), False


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward and loss: ``bf16`` or ``16-mixed`` (float16); ``32`` is a no-op."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def fit(
    model: nn.Module,
    criterion: Criterion,
    data: DataBundle,
    cfg: DictConfig,
    on_epoch: EpochCallback | None = None,
    best: BestEpoch | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` on ``data.train`` for ``cfg.trainer.epochs``; return one dict of metrics per epoch.

    Each epoch's dict holds ``train/loss`` (mean of the step losses), ``val/<metric>`` and, for a loss that learns
    parameters, ``loss/<name>`` (e.g. ``loss/alpha``); ``on_epoch(epoch, metrics)`` is called after every epoch. Batch order comes from a generator seeded by ``cfg.seed``. A
    non-finite loss raises :class:`NonFiniteLoss`: at its step on CPU, at the end of its epoch on accelerators
    (checking every step there would force a device sync per step). Non-finite gradients under a finite loss
    make the parameters non-finite, so the next step's loss is non-finite: the run stops there, before any further
    update, and the step whose gradients were bad is reported. ``trainer.precision`` runs forward and loss
    under autocast; ``16-mixed`` scales the loss with a ``GradScaler``. ``trainer.grad_share`` adds
    ``grad_share/<group>`` (:mod:`harness.grad_share`). ``best`` follows the best validation epoch.
    """
    x, y = data.train.x, data.train.y
    device = x.device
    n, batch_size, epochs = len(x), cfg.trainer.batch_size, cfg.trainer.epochs
    steps_per_epoch = math.ceil(n / batch_size)
    check_each_step = device.type == "cpu"

    optimizer = build_optimizer(cfg.optim, model, criterion.module)
    scheduler = build_scheduler(cfg.optim, optimizer, epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(cfg.seed)
    task = criterion.task
    precision = str(cfg.trainer.get("precision", "32"))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    shares = GradShare(to_device(task.gradient_groups(data), device)) if cfg.trainer.get("grad_share") else None

    history: list[dict[str, float]] = []
    bar_on, lines_on = progress_mode(cfg.trainer.get("progress", "auto"))
    bar = tqdm(total=epochs * steps_per_epoch, disable=not bar_on, unit="step", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        start_epoch = getattr(criterion.module, "start_epoch", None)  # losses on a schedule (ldam's deferred weights)
        for epoch in range(1, epochs + 1):
            model.train()
            if start_epoch is not None:
                start_epoch(epoch, epochs)
            perm = torch.randperm(n, generator=order).to(device)
            # CPU: the loss value is read every step anyway (NaN guard); accelerators: kept on device, read once
            step_losses: list[float] | torch.Tensor = [] if check_each_step else torch.empty(steps_per_epoch, device=device)
            for step in range(steps_per_epoch):
                idx = perm[step * batch_size : (step + 1) * batch_size]
                with autocast(device, precision):
                    output = model(x[idx])
                    if shares is not None:
                        output.retain_grad()
                    loss = criterion(output, y[idx], idx)
                if check_each_step:
                    value = loss.item()
                    if not math.isfinite(value):
                        raise non_finite(model.parameters(), epoch, (epoch - 1) * steps_per_epoch + step + 1, steps_per_epoch, value)
                    step_losses.append(value)
                else:
                    step_losses[step] = loss.detach()
                optimizer.zero_grad(set_to_none=True)
                if scaler.is_enabled():
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if shares is not None:
                    shares.add(output.grad, idx, scaler.get_scale() if scaler.is_enabled() else 1.0)
                if scheduler is not None:
                    scheduler.step()
                bar.update()

            losses = step_losses if isinstance(step_losses, list) else step_losses.tolist()  # one host sync
            bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
            if bad is not None:
                raise NonFiniteLoss(epoch, (epoch - 1) * steps_per_epoch + bad + 1, losses[bad])  # on GPU: first bad loss

            metrics = {"train/loss": sum(losses) / len(losses)}
            metrics.update({f"loss/{k}": v for k, v in criterion.module.learned().items()})
            if shares is not None:
                metrics.update(shares.epoch())
            val = task.score(evaluate(model, data.val.x, data.val.y), data)
            metrics.update({f"val/{k}": v for k, v in val.items()})
            history.append(metrics)
            if best is not None:
                best.update(epoch, val[best.monitor], model)
            bar.set_postfix(epoch=epoch, loss=f"{metrics['train/loss']:.4g}", **{task.monitor: f"{val[task.monitor]:.4g}"})
            if lines_on:
                print(
                    f"epoch {epoch}/{epochs}  train/loss {metrics['train/loss']:.4g}  val/{task.monitor} "
                    f"{val[task.monitor]:.4g}  {time.perf_counter() - started:.2f}s",
                    file=sys.stderr, flush=True,
                )
            if on_epoch is not None:
                on_epoch(epoch, metrics)
    finally:
        bar.close()
    return history
