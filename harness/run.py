"""One run end to end: validate, open the store, build data/model/loss, train, test, log to MLflow."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from . import plots, tasks
from .config import ConfigError, validate
from .criterion import build_criterion, check_targets
from .data import DataBundle, DataError, build_data
from .models import build_model
from .tracking import Run, TrackingError, flatten, library_versions, open_experiment, resolve_uri, source_version
from .tracking import reap_orphans, signal_handlers, signals_held, start_run, ui_command
from .train import NonFiniteLoss, fit, resolve_device


@dataclass
class RunResult:
    run_id: str
    run_name: str
    experiment_id: str
    tracking_uri: str
    status: str
    test: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class Terminated(BaseException):
    """SIGTERM arrived; unwinds like ``KeyboardInterrupt`` so the run is marked KILLED."""


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Two-stage Ctrl-C/SIGTERM for the life of a run: the first signal raises ``KeyboardInterrupt`` (SIGINT) or
    :class:`Terminated` (SIGTERM); further signals are then ignored, so a second Ctrl-C cannot cut off the closing
    of the run (a few milliseconds), after which the first one's unwinding ends the process."""
    def later(signum: int, frame: Any) -> None:
        pass  # the first signal is already unwinding the run

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, later)
        signal.signal(signal.SIGTERM, later)
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(f"signal {signum}")

    with signal_handlers(first):
        yield


@contextlib.contextmanager
def _marks_status(run: Run) -> Iterator[None]:
    """End ``run`` FAILED (with the reason as tags) on an error and KILLED on Ctrl-C or SIGTERM."""
    try:
        yield
    except (KeyboardInterrupt, Terminated) as err:
        with signals_held():
            with contextlib.suppress(Exception):
                run.set_tags({"failure_reason": f"interrupted ({type(err).__name__})"})
            run.end("KILLED")
        raise
    except BaseException as err:
        tags = {"failure_reason": f"{type(err).__name__}: {err}"[:5000]}
        if isinstance(err, NonFiniteLoss):
            tags.update(failed_epoch=str(err.epoch), failed_step=str(err.step), failed_in="gradients" if err.in_gradients else "loss")
        with signals_held():
            with contextlib.suppress(Exception):
                run.set_tags(tags)
            run.end("FAILED")
        raise


def default_run_name(cfg: DictConfig) -> str:
    """``<variant or loss>-<data>-s<seed>``, e.g. ``huber-outliers-s0`` or ``bce_balanced-imbalanced-s2``."""
    variant = (cfg.tracking.get("tags") or {}).get("variant") or cfg.loss.name
    return f"{variant}-{cfg.data.name}-s{cfg.seed}"


def run_tags(cfg: DictConfig, task: str) -> dict[str, str]:
    return {
        "loss": cfg.loss.name,
        "data": cfg.data.name,
        "model": cfg.model.name,
        "seed": str(cfg.seed),
        "task": task,
        **{str(k): str(v) for k, v in (cfg.tracking.get("tags") or {}).items()},
        **source_version(),
        **library_versions(),
    }


def test_metrics(model: torch.nn.Module, data: DataBundle, test_out: torch.Tensor) -> dict[str, float]:
    """Task metrics of ``test_out`` (the model's output on the test split), plus the weight and intercept errors
    of a linear model with known truth."""
    result = tasks.metrics(data.task, test_out, data.test.y, data.num_classes)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if "true_coef" in data.info and len(linear) == 1:
        weight = linear[0].weight.detach().reshape(-1).cpu().double()
        result["coef_error"] = (weight - data.info["true_coef"].double()).norm().item()
        result["bias_error"] = abs(linear[0].bias.item() - data.info["true_bias"])
    return result


def log_plots(
    run: Run, model: torch.nn.Module, data: DataBundle, history: list[dict[str, float]], test_out: torch.Tensor, title: str
) -> None:
    """Learning curves for every run, plus the task's own figures, as PNG artifacts under ``plots/``."""
    import matplotlib.pyplot as plt

    figures = {"plots/learning_curves.png": plots.learning_curves(history, title)}
    if data.task == "regression":
        figures["plots/regression_fit.png"] = plots.regression_fit(
            data.test.y, test_out, data.train.y, tasks.predict(model, data.train.x), data.info["outlier_mask"], title
        )
    elif data.task == "binary":
        figures["plots/pr_curve.png"] = plots.pr_curve(test_out, data.test.y, title)
        figures["plots/confusion_matrix.png"] = plots.confusion_matrix(
            tasks.confusion((test_out > 0).long(), data.test.y, 2), title
        )
    elif data.task == "multiclass":
        figures["plots/confusion_matrix.png"] = plots.confusion_matrix(
            tasks.confusion(test_out.argmax(1), data.test.y, data.num_classes), title
        )
        figures["plots/reliability.png"] = plots.reliability_diagram(torch.softmax(test_out.double(), 1), data.test.y, title)
    elif data.task == "segmentation":
        figures["plots/masks.png"] = plots.mask_grid(
            data.test.x[:6], data.test.y[:6], tasks.segmentation_predictions(test_out[:6]), title
        )
    for path, fig in figures.items():
        run.log_figure(fig, path)
        plt.close(fig)


def execute(cfg: DictConfig, parent_run_id: str | None = None) -> RunResult:
    """Run ``cfg`` end to end and return its result.

    Raises :class:`ConfigError` or :class:`TrackingError` before any data is built, :class:`DataError` before any
    run is created;
    errors during training end the MLflow run FAILED (KILLED on Ctrl-C/SIGTERM) and propagate.
    """
    validate(cfg)
    try:
        device = resolve_device(cfg.trainer.device)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    task = tasks.task_of_data(cfg.data.name)
    uri = resolve_uri(cfg.tracking.uri)
    client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    reap_orphans(client, experiment_id)

    if cfg.trainer.get("threads"):
        torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.data, cfg.seed)
    check_targets(cfg.loss.name, data)
    counts = data.class_counts() if data.num_classes else None
    criterion = build_criterion(cfg, task, data.num_classes, counts).to(device)
    data = data.to(device)
    model = build_model(cfg.model, data, criterion.num_outputs).to(device)

    run_name = cfg.tracking.run_name or default_run_name(cfg)
    run = start_run(client, experiment_id, run_name, run_tags(cfg, task), parent_run_id)
    started = time.perf_counter()
    with _interrupts(), _marks_status(run):
        resolved = OmegaConf.to_container(cfg, resolve=True)
        run.log_params({**flatten(resolved), "device": str(device), **criterion.logged_params()})
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        history = fit(model, criterion, data, cfg, on_epoch=lambda epoch, m: run.log_metrics(m, step=epoch))
        seconds = time.perf_counter() - started
        test_out = tasks.predict(model, data.test.x)
        test = test_metrics(model, data, test_out)
        run.log_metrics({**{f"test/{k}": v for k, v in test.items()}, "time/train_s": seconds}, step=cfg.trainer.epochs)
        if cfg.tracking.log_plots:
            log_plots(run, model, data, history, test_out, run_name)
        run.end("FINISHED")
    return RunResult(run.run_id, run_name, experiment_id, uri, "FINISHED", test, history, seconds)


def summary(result: RunResult, experiment: str) -> str:
    width = max(len(k) for k in result.test) + 5
    lines = [f"run {result.run_name} finished in {result.seconds:.1f}s"]
    lines += [f"  {'test/' + k:<{width}} {v:.4f}" for k, v in result.test.items()]
    lines.append(f"run id {result.run_id} in experiment '{experiment}' (id {result.experiment_id}), store {result.tracking_uri}")
    path = f"#/experiments/{result.experiment_id}/runs/{result.run_id}"
    if result.tracking_uri.startswith(("http://", "https://")):
        lines.append(f"see it: {result.tracking_uri.rstrip('/')}/{path}")
    else:
        lines.append(f"see it: {ui_command(result.tracking_uri)}  then http://127.0.0.1:5000/{path}")
    return "\n".join(lines)


def _sweep_parent() -> str | None:
    """The parent run id when this job is part of a Hydra multirun, else ``None``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .callbacks import PARENT_ENV

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return os.environ.get(PARENT_ENV)
    return None


def main_job(cfg: DictConfig) -> float:
    """Hydra task function: run, print the summary, return the monitored validation metric (for sweepers).

    A config, store or data error prints one line and exits with status 2 before any run is created; a run that
    fails in training (non-finite loss) is marked FAILED, prints one line and exits with status 1. Inside a sweep
    both return NaN instead, so the other jobs go on and the sweep's summary names the failure.
    """
    parent = _sweep_parent()
    try:
        result = execute(cfg, parent_run_id=parent)
    except (ConfigError, TrackingError, DataError, NonFiniteLoss) as err:
        failed_run = isinstance(err, NonFiniteLoss)
        print(f"error: {'run FAILED: ' if failed_run else ''}{err}", file=sys.stderr, flush=True)
        if parent is not None:
            return float("nan")
        sys.exit(1 if failed_run else 2)
    print(summary(result, cfg.tracking.experiment), flush=True)
    monitor, _ = tasks.MONITOR[tasks.task_of_data(cfg.data.name)]
    return result.history[-1][f"val/{monitor}"]
