"""Hydra callback for sweeps (``-m``): one MLflow parent run per sweep, created before any job starts.

``on_multirun_start`` (in the launching process, before the launcher starts any job):
1. expands the sweep (basic-sweeper syntax, as the basic, joblib and submitit launchers run it) and validates every
   job's config, so a typo in the fifth value fails the sweep at once instead of an hour in;
2. creates the store and experiment once, under the store lock, so parallel jobs never race to create them;
3. creates the parent run, tagged with the sweep's overrides, and hands its id to the jobs through the
   environment (``HARNESS_PARENT_RUN_ID``; launcher workers inherit it). Workers sharing an Optuna study
   (``hydra.sweeper.storage``) share one parent run: the first creates it, the others join it
   (:func:`harness.tuning.join_parent`), each tagged ``sweep.worker/<host>/<pid>`` on it.
``on_multirun_end`` counts the jobs' runs, prints the failures, puts the comparison of the swept arms on the parent
run (``harness.compare.log_sweep``: the table with paired statistics as the run's description, the files as artifacts,
per-arm metrics, an ``arm`` tag on each child; a failure there prints one warning and changes nothing else) and ends
the parent run FINISHED, or FAILED when a job failed (the sweep then exits with status 1). If the sweep dies first
(Ctrl-C), an exit hook ends it KILLED. A worker of a shared study whose peers still run trials leaves the parent
run open for the last of them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import tuning

PARENT_ENV = "HARNESS_PARENT_RUN_ID"


def expand_sweep(overrides: list[str]) -> list[list[str]] | None:
    """Every job's overrides for a basic-sweeper sweep, or ``None`` if the overrides use other sweeper syntax."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in parsed):
            return None  # ranges, intervals, ...: left to the sweeper
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # noqa: BLE001 - unknown syntax: the sweeper will report it
        return None


def is_basic(sweeper: Any) -> bool:
    """Whether ``hydra.sweeper`` is Hydra's basic sweeper (the one :func:`expand_sweep` expands)."""
    return str(sweeper.get("_target_", "")).endswith("BasicSweeper")


def sweep_params(sweeper: Any) -> list[str]:
    """``hydra.sweeper.params`` as overrides, for Hydra's basic sweeper (which puts them before the command line's;
    the later wins); none for another sweeper."""
    return [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()] if is_basic(sweeper) else []


def sweep_jobs(sweeper: Any, overrides: list[str]) -> list[list[str]] | None:
    """Every job's overrides of a basic-sweeper sweep run with the command line's ``overrides``, in the sweeper's
    order; ``None`` for another sweeper or syntax left to it."""
    return expand_sweep(sweep_params(sweeper) + overrides) if is_basic(sweeper) else None


def seedless(job: list[str]) -> tuple[tuple[str, ...], object]:
    """A job's overrides without its ``seed=`` one, and the seed's value (Hydra's parse of it; ``None`` if unset):
    jobs that differ only in seed compose the same config but for the seed, so one of them is validated in full."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    rest = tuple(o for o in job if not o.startswith("seed="))
    seeds = [o for o in job if o.startswith("seed=")]
    if not seeds:
        return rest, None
    try:
        return rest, OverridesParser.create().parse_override(seeds[-1]).value()
    except Exception:  # noqa: BLE001 - unparsable: validated in full, where Hydra names the problem
        return tuple(job), None


class SweepParentRun(Callback):
    def __init__(self) -> None:
        self.run: Any = None
        self.jobs = 0
        self.sweeper: Any = None  # hydra.sweeper, when its Optuna study is shared with other workers

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra turns a callback's exception into a warning and sweeps on, without a parent run: here it ends the
        sweep instead, with one line, before any job starts."""
        try:
            self._start(config)
        except Exception as err:  # noqa: BLE001 - reported as one line
            message = " ".join(str(err).split())[:500]
            print(f"error: the sweep cannot start: {message}", file=sys.stderr, flush=True)
            sys.exit(2)

    def _start(self, config: DictConfig) -> None:
        from hydra import compose

        from .config import RULES, ConfigError, validate
        from .tracking import Run, open_experiment, resolve_uri, spool_root, start_run

        overrides = list(config.hydra.overrides.task)
        sweeper = config.hydra.sweeper
        params = sweep_params(sweeper)
        jobs = sweep_jobs(sweeper, overrides)
        if jobs is not None:
            errors = []
            checked: dict[tuple[str, ...], str | None] = {}  # the job's overrides but its seed -> its error, if any
            for job in jobs:
                key, seed = seedless(job)
                if key in checked and checked[key] is None:  # the same config but the seed: only the seed to check
                    if not RULES["seed"].ok(seed):
                        errors.append(f"  {' '.join(job)}\n    error: seed={seed!r} is not allowed: seed must be {RULES['seed'].allowed}")
                    continue
                checked[key] = "unchecked"
                try:
                    validate(compose(config_name="config", overrides=job))
                    checked[key] = None
                except ConfigError as err:
                    errors.append(f"  {' '.join(job)}\n    error: {err}")
                except Exception as err:  # noqa: BLE001 - Hydra composition errors name the bad override
                    from .cli_errors import describe

                    def keys_of(parent: str, job: list[str] = job) -> list[str] | None:
                        from omegaconf import OmegaConf

                        groups = [o for o in job if "=" in o and "." not in o.split("=")[0] and not o.startswith(("+", "~"))]
                        try:
                            node = OmegaConf.select(compose(config_name="config", overrides=groups), parent)
                        except Exception:  # noqa: BLE001 - no suggestion then
                            return None
                        return [str(k) for k in node.keys()] if OmegaConf.is_dict(node) else None

                    message = describe(err, keys_of) or str(err).split("Config search path")[0].strip().replace("\n", " ")
                    errors.append(f"  {' '.join(job)}\n    error: {message}")
            if errors:
                print(f"error: {len(errors)} of {len(jobs)} sweep jobs cannot run; nothing was started:", file=sys.stderr)
                print("\n".join(errors), file=sys.stderr)
                sys.exit(2)
            self.jobs = len(jobs)
        if str(sweeper.get("_target_", "")).endswith("OptunaSweeper"):
            tuning.check(sweeper, overrides)
            self.jobs = int(sweeper.n_trials)
        uri = resolve_uri(config.tracking.uri)
        client, experiment_id = open_experiment(uri, config.tracking.experiment)
        name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
        swept = " ".join(params + overrides)

        def create() -> str:
            self.run = start_run(client, experiment_id, name, {"sweep": "parent", "sweep.overrides": swept[:5000]})
            self.run.log_params({"sweep.overrides": swept[:6000], "sweep.jobs": str(self.jobs or "unknown")})
            return self.run.run_id

        if tuning.shared(sweeper):  # several workers, one study: one parent run for all of them
            self.sweeper = sweeper
            run_id, created = tuning.join_parent(sweeper, create, client)
            if not created:
                remote = str(uri).startswith(("http://", "https://"))
                spool = spool_root() / "mlflow-spool" / f"{run_id}-{os.getpid()}"  # workers may share a directory
                self.run = Run(client, run_id, spool=spool if remote else None)
                name = f"{client.get_run(run_id).info.run_name}, joined"
            self.run.set_tags({tuning.worker_tag(): "1"})
        else:
            create()
        self.experiment_id, self.uri = experiment_id, uri
        os.environ[PARENT_ENV] = self.run.run_id
        atexit.register(self._end_if_running)
        print(f"sweep parent run {self.run.run_id} ({name}) in experiment '{config.tracking.experiment}', store {uri}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run is None or self._leave_to_other_workers():
            return
        try:
            children = self.run.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.run.run_id}'", max_results=10000
            )
        except Exception as err:
            from .tracking import server_unreachable

            if not server_unreachable(err):
                raise
            self._end_unreachable()
        finished = [r for r in children if r.info.status == "FINISHED"]
        failed = [r for r in children if r.info.status != "FINISHED"]
        missing = max(0, self.jobs - len(children))
        lines = [f"sweep: {len(finished)} of {self.jobs or len(children)} jobs finished"]
        lines += [f"  {r.info.status}: {r.info.run_name} ({r.data.tags.get('failure_reason', '')[:200]})" for r in failed]
        if missing:
            lines.append(f"  {missing} job(s) created no run (see their errors above)")
        print("\n".join(lines), flush=True)
        bad = len(failed) + missing
        self.run.set_tags({"sweep.finished": str(len(finished)), "sweep.failed": str(bad)})
        self._log_comparison(missing)
        self.run.end("FAILED" if bad else "FINISHED")
        os.environ.pop(PARENT_ENV, None)
        if bad:
            sys.exit(1)

    def _end_unreachable(self) -> None:
        """The server is gone at the sweep's end: the jobs' runs cannot be counted, so the parent run ends FAILED with
        that reason, kept in its spool until ``python -m harness.upload`` sends it (:meth:`Run.end` prints how)."""
        reason = "tracking server unreachable at the end of the sweep: the jobs' runs were not counted or compared"
        print(f"sweep: {reason} (once it is back: python -m harness.compare --parent {self.run.run_id})", flush=True)
        self.run.set_tags({"failure_reason": reason})
        self.run.end("FAILED")
        os.environ.pop(PARENT_ENV, None)
        sys.exit(1)

    def _log_comparison(self, missing: int) -> None:
        """The comparison on the parent run; never loses the sweep's status (one warning line instead)."""
        try:
            from .compare import log_sweep
            from .tracking import see_it

            print(log_sweep(self.run.client, self.run.run_id, self.uri, missing), flush=True)
            print(see_it(self.uri, self.experiment_id, self.run.run_id), flush=True)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - compare exits with a message; Ctrl-C ends it KILLED
            message = " ".join(str(err).split())[:300]
            print(f"warning: no comparison on the parent run ({type(err).__name__}: {message})", file=sys.stderr, flush=True)

    def _leave_to_other_workers(self) -> bool:
        """In a study shared by several workers, whether others still run trials (then the last of them ends the
        parent run, and this one leaves it open)."""
        if self.sweeper is None:
            return False
        busy = tuning.trials_in_flight(self.sweeper)
        if not busy:  # this worker closes the parent run: its tags get the whole study's best trial
            tuning.report(tuning.shared_study(self.sweeper), None, self.run.set_tags, "all workers' best trial")
        if busy:
            print(f"sweep: this worker is done; {busy} trial(s) of study '{self.sweeper.study_name}' still run in other "
                  f"workers: the last worker to end closes parent run {self.run.run_id}", flush=True)
            self.run = None
            os.environ.pop(PARENT_ENV, None)
        return bool(busy)

    def _end_if_running(self) -> None:
        with contextlib.suppress(Exception):
            if self.run is not None and self.run.status is None and self._leave_to_other_workers():
                return
        if self.run is not None and self.run.status is None:
            try:
                self.run.end("KILLED")
            except Exception:  # noqa: BLE001 - best effort at interpreter exit
                pass
