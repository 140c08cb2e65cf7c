"""Optuna tuning as a Hydra sweeper (``hydra/sweeper=optuna``; the presets ``experiment=tune_huber_delta`` and
``experiment=tune_focal_gamma``).

The search space is written in Hydra's sweep syntax (``interval(0.05, 20)``, ``tag(log, interval(...))``,
``tag(int, interval(8, 64))``, ``choice(a, b)``, ``range(1, 5)``), in ``hydra.sweeper.params`` or on the command line. Every trial is one job of the
configured launcher (basic, joblib, submitit/SLURM), so one MLflow child run. With ``hydra.sweeper.storage`` (an
Optuna storage URL, e.g. ``postgresql+psycopg://user@host/db`` or ``sqlite:///optuna.db``) the study lives in that
database and several workers (processes, SLURM jobs, machines) started with the same command share it: Optuna hands
each trial to one worker only, ``n_trials`` counts the study's trials of all workers together (a worker stops when
the study has them; raise it to continue a finished study), and all trials are children of one MLflow parent run
(:func:`join_parent`)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

PARENT_ATTR = "mlflow_parent_run_id"  # the study's user attribute naming its MLflow parent run
WORKER_TAG = "sweep.worker/"           # parent-run tag per worker process: sweep.worker/<host>/<pid>
_CREATED: set[str] = set()             # the shared studies this process created


def optuna_module() -> Any:
    """``optuna`` (>= 4), or a one-line error naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        sys.exit("error: hydra/sweeper=optuna needs Optuna: pip install 'loss-harness[tune]'")
    if int(optuna.__version__.split(".")[0]) < 4:
        sys.exit(f"error: hydra/sweeper=optuna needs optuna >= 4 (its RDB storage works with SQLAlchemy 2), found "
                 f"{optuna.__version__}: pip install 'optuna>=4' (hydra-optuna-sweeper pins optuna 2: uninstall it)")
    return optuna


def distribution(override: Any) -> Any:
    """The Optuna distribution of one parsed sweep override (Hydra's syntax, as hydra-optuna-sweeper reads it):
    ``choice`` -> categorical; ``range(start, stop, step)`` -> integers (or floats) from start to below stop;
    ``interval(lo, hi)`` -> uniform floats (Hydra's intervals are floats), ``tag(int, interval(...))`` integers,
    ``tag(log, ...)`` log-uniform."""
    from hydra.core.override_parser.types import Glob, Transformer

    optuna = optuna_module()
    dists = optuna.distributions
    value = override.value()
    if isinstance(value, Glob):  # a glob selects config keys: nothing to sample
        pass
    elif override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return dists.CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    elif override.is_range_sweep():
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values) and isinstance(value.step, int):
            return dists.IntDistribution(values[0], values[-1], step=value.step)
        return dists.FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
    elif override.is_interval_sweep():
        log = "log" in value.tags
        if "int" in value.tags:
            return dists.IntDistribution(int(value.start), int(value.end), log=log)
        return dists.FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"hydra/sweeper=optuna: {override.input_line} is not a search space Optuna can sample "
                     f"(use choice(...), range(...), interval(...) or tag(log, interval(...)))")


def search_space(params: Mapping[str, Any] | None, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The distributions to sample (from ``hydra.sweeper.params`` and the command line's sweep overrides; the
    command line wins for a key given in both) and the fixed overrides every trial gets."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def check(config: Mapping[str, Any], arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """One line, before any run, for sweeper settings (``hydra.sweeper``) or a search space that cannot work;
    else the search space and fixed overrides (:func:`search_space`)."""
    if config.get("direction") not in ("minimize", "maximize"):
        _fail(f"hydra.sweeper.direction must be one of minimize, maximize, got {config.get('direction')!r}")
    if config.get("storage") and not config.get("study_name"):
        _fail("hydra.sweeper.study_name is needed with hydra.sweeper.storage (the name the workers share)")
    if not isinstance(config.get("n_trials"), int) or config["n_trials"] < 1:
        _fail(f"hydra.sweeper.n_trials must be an integer >= 1, got {config.get('n_trials')!r}")
    try:
        space, fixed = search_space(config.get("params"), arguments)
    except Exception as err:  # noqa: BLE001 - Hydra's parse errors too: one line
        _fail(str(err).strip().splitlines()[0])
    if not space:
        _fail("hydra/sweeper=optuna has nothing to tune: give hydra.sweeper.params or a sweep override such as "
              "'loss.delta=tag(log, interval(0.05, 20))'")
    return space, fixed


_STORAGES: dict[str, Any] = {}


def storage_of(url: str) -> Any:
    """Optuna's storage for ``url``, one per process. Creating it creates the tables of an empty database; two
    workers doing that at once collide (PostgreSQL: a unique violation on the new table's type), so it is retried."""
    optuna = optuna_module()
    if url not in _STORAGES:
        from sqlalchemy.exc import SQLAlchemyError

        for attempt in range(5):
            try:
                _STORAGES[url] = optuna.storages.RDBStorage(url)
                break
            except SQLAlchemyError:
                if attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
    return _STORAGES[url]


def open_study(config: Mapping[str, Any]) -> tuple[Any, bool]:
    """The sweeper's study (``hydra.sweeper``: storage, study_name, direction, sampler) and whether this call
    created it (``False``: another worker, or an earlier tune, did)."""
    from hydra.utils import instantiate

    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = instantiate(config["sampler"]) if config.get("sampler") else None
    kwargs = dict(storage=config.get("storage"), study_name=config.get("study_name"), sampler=sampler,
                  direction=config.get("direction", "minimize"))
    if kwargs["storage"] is None:
        return optuna.create_study(**kwargs), True
    kwargs["storage"] = storage_of(kwargs["storage"])
    try:
        study = optuna.create_study(**kwargs, load_if_exists=False)
        _CREATED.add(study.study_name)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=kwargs["study_name"], storage=kwargs["storage"], sampler=sampler)
    if study.study_name not in _CREATED and hasattr(sampler, "reseed_rng"):
        sampler.reseed_rng()  # a joining worker: one seed in two workers would propose the same parameters
    return study, False


def shared(sweeper: Mapping[str, Any]) -> bool:
    """Whether this sweep's study lives in a storage that other workers may share."""
    return str(sweeper.get("_target_", "")).endswith("OptunaSweeper") and bool(sweeper.get("storage"))


def worker_tag() -> str:
    return f"{WORKER_TAG}{socket.gethostname()}/{os.getpid()}"


def join_parent(sweeper: Mapping[str, Any], create: Any, client: Any, wait_s: float = 60.0) -> tuple[str, bool]:
    """The MLflow parent run of a shared study: the worker that creates the study creates the run (``create()``
    returns its id) and records it in the study; the others wait for that record and join the run, reopening it if
    it had ended (a finished study tuned further). Returns the run id and whether this worker created it."""
    study, created = open_study(sweeper)
    run_id = None
    if not created:
        deadline = time.monotonic() + wait_s
        while (run_id := study.user_attrs.get(PARENT_ATTR)) is None and time.monotonic() < deadline:
            time.sleep(0.5)
            study = optuna_module().load_study(study_name=study.study_name, storage=storage_of(sweeper["storage"]))
    if run_id is None:  # a new study, or one created by other means: this worker makes the parent
        run_id = create()
        study.set_user_attr(PARENT_ATTR, run_id)
        return run_id, True
    if client.get_run(run_id).info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return run_id, False


def shared_study(sweeper: Mapping[str, Any]) -> Any:
    return optuna_module().load_study(study_name=sweeper["study_name"], storage=storage_of(sweeper["storage"]))


def trials_in_flight(sweeper: Mapping[str, Any]) -> int:
    """How many of a shared study's trials other workers are still running."""
    running = (optuna_module().trial.TrialState.RUNNING,)
    return len(shared_study(sweeper).get_trials(deepcopy=False, states=running))


def objective(ret: Any) -> float | None:
    """A finished job's value for Optuna, or ``None`` when the job failed or returned no finite number."""
    try:
        value = float(ret.return_value)
    except Exception:  # noqa: BLE001 - a failed job re-raises its error here; its run records it
        return None
    return value if math.isfinite(value) else None


SURPLUS = "not run: the study reached n_trials"


def counted(trials: list[Any]) -> list[Any]:
    """The trials that count towards ``n_trials``: all but the surplus ones a worker asked for and did not run."""
    return [t for t in trials if t.user_attrs.get("harness") != SURPLUS]


def run_study(sweeper: Mapping[str, Any], launcher: Any, arguments: list[str], sweep_dir: Path,
              set_tags: Callable[[dict[str, str]], None] | None = None) -> Any:
    """Ask the study for trials, up to ``n_jobs`` at a time, run each as a job of ``launcher``, tell the study its
    validation value (a failed or diverged job is a failed trial), until the study counts ``n_trials`` trials.
    A trial that other workers' trials pushed past ``n_trials`` (numbers are handed out in order, so every worker
    judges a trial alike) is told failed, marked surplus, and not run. Writes ``optimization_results.yaml`` into
    ``sweep_dir`` and tags the parent run through ``set_tags`` with the best trial. Returns the study."""
    optuna = optuna_module()
    space, fixed = check(sweeper, arguments)
    study, _ = open_study(sweeper)
    n_trials, n_jobs = int(sweeper["n_trials"]), max(1, int(sweeper.get("n_jobs") or 1))
    ran = 0
    while (left := n_trials - len(counted(study.get_trials(deepcopy=False)))) > 0:
        trials = [study.ask(space) for _ in range(min(n_jobs, left))]
        others = counted(study.get_trials(deepcopy=False))
        keep = []
        for trial in trials:
            if len([t for t in others if t.number < trial.number]) >= n_trials:
                trial.set_user_attr("harness", SURPLUS)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                keep.append(trial)
        trials = keep
        if not trials:
            break
        jobs = [tuple(fixed + [f"{k}={v}" for k, v in t.params.items()]) for t in trials]
        try:
            returns = launcher.launch(jobs, initial_job_idx=trials[0].number)
        except BaseException:  # interrupted: no trial of this worker stays RUNNING in the shared study
            for trial in trials:
                with contextlib.suppress(Exception):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        for trial, ret in zip(trials, returns):
            value = objective(ret)
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
        ran += len(trials)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    print(f"optuna: study '{study.study_name}': this worker ran {ran} trial(s); the study has {len(done)} complete "
          f"of {n_trials}", flush=True)
    report(study, sweep_dir, set_tags)
    return study


def report(study: Any, sweep_dir: Path | None, set_tags: Callable[[dict[str, str]], None] | None,
           what: str = "best trial") -> None:
    """The study's best trial so far: printed, written to ``sweep_dir/optimization_results.yaml`` (Hydra's Optuna
    sweeper's file) and set as ``optuna.*`` tags of the parent run through ``set_tags``. The worker that closes a
    shared study's parent run calls it again, so the tags end with the whole study's best."""
    from omegaconf import OmegaConf

    optuna = optuna_module()
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return
    best = study.best_trial
    print(f"optuna: {what} #{best.number}: {' '.join(f'{k}={v}' for k, v in best.params.items())} "
          f"-> {best.value}", flush=True)
    if sweep_dir is not None:
        results = {"name": "optuna", "study_name": study.study_name, "best_trial": best.number,
                   "best_params": dict(best.params), "best_value": best.value}
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
    if set_tags is not None:
        tags = {"optuna.study": study.study_name, "optuna.best_trial": str(best.number),
                "optuna.best_value": str(best.value)}
        set_tags({**tags, **{f"optuna.best.{k}": str(v) for k, v in best.params.items()}})
