"""One run end to end: validate, open the store, build data/model/loss, train, test, log to MLflow."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from . import models, plots, tasks
from .models import build_model
from .config import ConfigError, task_of, validate, validate_data
from .criterion import build_criterion, probe
from .data import DataBundle, DataError, build_data
from .evaluation import Evaluation, evaluate
from .grad_share import PREFIX as GRAD_SHARE, GradShare
from .loss_config import loss_name
from .loss_config import target_of as loss_target
from .tracking import Run, TrackingError, flatten, library_versions, open_experiment, resolve_uri, source_version
from .tracking import reap_orphans, see_it, signal_handlers, signals_held, start_run
from .train import BestEpoch, NonFiniteLoss, fit, resolve_device


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
    best: dict[str, float] = field(default_factory=dict)


class Terminated(BaseException):
    """SIGTERM arrived; unwinds like ``KeyboardInterrupt`` so the run is marked KILLED."""


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
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
def marks_status(run: Run) -> Iterator[None]:
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
        end_failed(run, err)
        raise


def end_failed(run: Run, err: BaseException) -> None:
    """End ``run`` FAILED with ``err`` as its ``failure_reason`` tag (and, for a non-finite loss, where it happened)."""
    tags = {"failure_reason": f"{type(err).__name__}: {err}"[:5000]}
    if isinstance(err, NonFiniteLoss):
        tags.update(failed_epoch=str(err.epoch), failed_step=str(err.step), failed_in="gradients" if err.in_gradients else "loss")
    with signals_held():
        with contextlib.suppress(Exception):
            run.set_tags(tags)
        run.end("FAILED")


def variant_of(cfg: DictConfig) -> str:
    """The study arm: ``tracking.tags.variant`` when a variant sets it, else the loss's name."""
    return str((cfg.tracking.get("tags") or {}).get("variant") or loss_name(cfg))


def default_run_name(cfg: DictConfig) -> str:
    """``<variant or loss>-<data>-s<seed>``, e.g. ``huber-outliers-s0`` or ``bce_balanced-imbalanced-s2``."""
    return f"{variant_of(cfg)}-{cfg.data.name}-s{cfg.seed}"


def run_tags(cfg: DictConfig, task: str) -> dict[str, str]:
    return {
        "loss": loss_name(cfg),
        "data": cfg.data.name,
        "model": models.model_name(cfg.model),
        "seed": str(cfg.seed),
        "task": task,
        **{str(k): str(v) for k, v in (cfg.tracking.get("tags") or {}).items() if v is not None},
        "variant": variant_of(cfg),
        **source_version(),
        **library_versions(),
        "torch.threads": str(torch.get_num_threads()),  # CPU results can differ in the last digits with the count
    }


def provenance_tags(data: DataBundle, digest: str) -> dict[str, str]:
    """What the run trained on, as tags: source, digest, and what stood in for the requested data (if anything)."""
    tags = {"data.source": data.source, "data.digest": digest}
    if data.substitute:
        tags["data.substitute"] = data.substitute
    return tags


def share_params(cfg: DictConfig, task: tasks.Task, host: DataBundle) -> dict[str, str]:
    """With ``trainer.grad_share``, each group's share of the training data (``grad_share.<group>_fraction``)."""
    if not cfg.trainer.get("grad_share"):
        return {}
    return {f"grad_share.{k}_fraction": f"{v:.6g}" for k, v in GradShare(task.gradient_groups(host)).fractions().items()}


def log_plots(
    run: Run, task: tasks.Task, model: torch.nn.Module, data: DataBundle, host: DataBundle,
    history: list[dict[str, float]], test: Evaluation, title: str,
) -> None:
    """Learning curves for every run, plus the task's own figures, as PNG artifacts under ``plots/``. ``data`` is
    on the training device (forward passes), ``host`` its CPU copy (inputs and facts shown in plots)."""
    import matplotlib.pyplot as plt

    def evaluate_split(name: str) -> Evaluation:
        split = getattr(data, name)
        return evaluate(model, split.x, split.y)

    figures = {"plots/learning_curves.png": plots.learning_curves(history, title)}
    if any(k.startswith(GRAD_SHARE) for k in history[0]):
        figures["plots/grad_share.png"] = plots.grad_share(history, GradShare(task.gradient_groups(host)).fractions(), title)
    figures.update(task.figures(test, host, evaluate_split, title))
    for path, fig in figures.items():
        run.log_figure(fig, path)
        plt.close(fig)


@dataclass
class Prepared:
    """A run built and checked, before the store is touched: its task, data (``host`` on the CPU, ``data`` on the
    training device), loss and model."""

    cfg: DictConfig
    device: torch.device
    task: tasks.Task
    host: DataBundle
    data: DataBundle
    criterion: Any
    model: torch.nn.Module
    digest: str = ""  # host.digest(), computed once, before any timing


def prepare(cfg: DictConfig) -> Prepared:
    """Validate ``cfg`` and build its data, loss and model (seeded by ``cfg.seed``, in that order).

    Raises :class:`ConfigError` before any data is built; :class:`DataError`, or a :class:`ConfigError` that only the
    data, model or loss can tell, before the store is touched.
    """
    validate(cfg)
    try:
        device = resolve_device(cfg.trainer.device)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    task = task_of(cfg)

    if cfg.trainer.get("threads"):
        torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    host = build_data(cfg.data, cfg.seed)
    validate_data(cfg, host)
    counts = host.class_counts() if host.num_classes else None
    criterion = build_criterion(cfg, task, host.num_classes, counts, host.info.get("noise_matrix"), host.train.y).to(device)
    data = host.to(device)
    model = build_model(cfg.model, data, criterion.num_outputs).to(device)
    if loss_target(cfg) or models.target_of(cfg.model):
        probe(criterion, model, data.train.x, data.train.y)
    if host.substitute:
        print(f"note: data={host.name}: {host.substitute}", file=sys.stderr, flush=True)
    return Prepared(cfg, device, task, host, data, criterion, model, host.digest())


@dataclass
class Opened:
    """A started MLflow run, its name, experiment and store."""

    run: Run
    name: str
    experiment_id: str
    uri: str


def start(p: Prepared, parent_run_id: str | None) -> Opened:
    """Open the store and start the MLflow run of ``p``; :class:`TrackingError` before any run is created."""
    cfg = p.cfg
    uri = resolve_uri(cfg.tracking.uri)
    client, experiment_id = open_experiment(uri, cfg.tracking.experiment)
    reap_orphans(client, experiment_id)
    run_name = cfg.tracking.run_name or default_run_name(cfg)
    tags = {**run_tags(cfg, p.task.name), **provenance_tags(p.host, p.digest)}
    return Opened(start_run(client, experiment_id, run_name, tags, parent_run_id), run_name, experiment_id, uri)


def log_setup(run: Run, p: Prepared) -> BestEpoch | None:
    """The run's parameters, resolved config and dataset; the :class:`BestEpoch` that ``trainer.keep_best`` follows."""
    cfg = p.cfg
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run.log_params({**flatten(resolved), "device": str(p.device), **p.criterion.logged_params(), **share_params(cfg, p.task, p.host)})
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    run.log_dataset(p.host.name, p.digest, p.host.source, p.host.profile())
    return BestEpoch(p.task.monitor, p.task.metrics[p.task.monitor]) if cfg.trainer.get("keep_best") else None


def finish(o: Opened, p: Prepared, history: list[dict[str, float]], best: BestEpoch | None, seconds: float) -> RunResult:
    """Test the trained model, log its test metrics, training time, plots and best-epoch metrics, end the run
    FINISHED."""
    task, model, data, host, run = p.task, p.model, p.data, p.host, o.run
    test_eval = evaluate(model, data.test.x, data.test.y)
    test = task.test_metrics(test_eval, host, model)
    run.log_metrics({**{f"test/{k}": v for k, v in test.items()}, "time/train_s": seconds}, step=p.cfg.trainer.epochs)
    if p.cfg.tracking.log_plots:
        log_plots(run, task, model, data, host, history, test_eval, o.name)
    at_best = best_metrics(model, best, task, data, host)
    run.log_metrics(at_best, step=p.cfg.trainer.epochs)
    run.end("FINISHED")
    return RunResult(run.run_id, o.name, o.experiment_id, o.uri, "FINISHED", test, history, seconds, at_best)


def execute(cfg: DictConfig, parent_run_id: str | None = None) -> RunResult:
    """Run ``cfg`` end to end and return its result.

    Raises :class:`ConfigError` before any data is built; :class:`DataError`, a :class:`ConfigError` that only the
    data, model or loss can tell, or :class:`TrackingError` before the store is touched or any run is created;
    errors during training end the MLflow run FAILED (KILLED on Ctrl-C/SIGTERM) and propagate. The caller's torch
    thread count is restored (``trainer.threads`` sets it for the run only).
    """
    with own_threads():
        p = prepare(cfg)
        o = start(p, parent_run_id)
        started = time.perf_counter()
        with interrupts(), marks_status(o.run):
            best = log_setup(o.run, p)
            history = fit(p.model, p.criterion, p.data, cfg, on_epoch=lambda epoch, m: o.run.log_metrics(m, step=epoch), best=best)
            return finish(o, p, history, best, time.perf_counter() - started)


@contextlib.contextmanager
def own_threads() -> Iterator[None]:
    """Restore torch's CPU thread count on leaving: the ``trainer.threads`` that :func:`prepare` sets inside holds for
    that run (or stack of runs) only, not for the jobs after it in the process."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def best_metrics(model: torch.nn.Module, best: BestEpoch | None, task: tasks.Task, data: DataBundle, host: DataBundle) -> dict[str, float]:
    """The test metrics of the model as it was at the best validation epoch (``best/<metric>``, and that epoch as
    ``best/epoch``); ``model`` is left in that state. None without ``trainer.keep_best``."""
    if best is None or best.state is None:
        return {}
    model.load_state_dict(best.state)
    test = task.test_metrics(evaluate(model, data.test.x, data.test.y), host, model)
    return {"best/epoch": float(best.epoch), **{f"best/{k}": v for k, v in test.items()}}


def summary(result: RunResult, experiment: str) -> str:
    width = max(len(k) for k in result.test) + 5
    lines = [f"run {result.run_name} finished in {result.seconds:.1f}s"]
    lines += [f"  {'test/' + k:<{width}} {v:.4f}" for k, v in result.test.items()]
    if result.best:
        headline = next(iter(result.test))
        lines.append(f"  best validation epoch {result.best['best/epoch']:.0f} of {len(result.history)}: best/{headline} "
                     f"{result.best['best/' + headline]:.4f} (each test metric at that epoch: best/<metric>)")
    lines.append(f"run id {result.run_id} in experiment '{experiment}' (id {result.experiment_id}), store {result.tracking_uri}")
    lines.append(see_it(result.tracking_uri, result.experiment_id, result.run_id))
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
    if cfg.trainer.get("vectorize") and parent is not None and not _stacking_launcher():
        print("note: trainer.vectorize=true stacks jobs under the harness's own launcher (the default); this "
              "launcher runs each job alone", file=sys.stderr, flush=True)
    return job_outcome(lambda: execute(cfg, parent_run_id=parent), cfg, parent)


JOB_ERRORS = (ConfigError, TrackingError, DataError, NonFiniteLoss)


def job_outcome(run: Callable[[], RunResult], cfg: DictConfig, parent: str | None) -> float:
    """A job's end: ``run()``'s summary printed and its last monitored validation value returned; one of
    :data:`JOB_ERRORS` printed as one line, then NaN inside a sweep (``parent``), else exit status 1 (the run
    FAILED) or 2 (nothing was run)."""
    try:
        result = run()
    except JOB_ERRORS as err:
        failed_run = isinstance(err, NonFiniteLoss)
        print(f"error: {'run FAILED: ' if failed_run else ''}{err}", file=sys.stderr, flush=True)
        if parent is not None:
            return float("nan")
        sys.exit(1 if failed_run else 2)
    print(summary(result, cfg.tracking.experiment), flush=True)
    return result.history[-1][f"val/{task_of(cfg).monitor}"]


def _stacking_launcher() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().launcher.get("_target_", "")).endswith("HarnessLauncher")
