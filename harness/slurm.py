"""SLURM sweeps (``-m hydra/launcher=slurm``, or Hydra's own ``submitit_slurm``): job states without SLURM
accounting, and each run's SLURM ids.

submitit asks ``sacct`` for the state of its jobs. On a cluster without accounting (no ``slurmdbd``: small labs, a
workstation), every poll fails, printing a warning and sacct's own error line, again and again, and a job that dies
without a result is never seen to end. The preset's callback, :class:`SlurmStates`, tries ``sacct`` once and, where
it does not answer, has submitit ask ``squeue --states=all`` instead (it knows jobs until ``MinJobAge`` after they
end, 300 s by default). Every sweep has the callback (``conf/config.yaml``); it does nothing unless the launcher is
submitit's SLURM launcher.

Hydra's submitit launcher also raises for a job that left no result (``scancel``, a node failure, the time limit),
which ends the whole sweep before its summary. The callback has such a job count as a job that returned NaN, as the
harness's own failures do in a sweep, so the other jobs' results are collected and the summary names its run
(``KILLED`` after ``scancel``: the run handles SIGTERM).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

from hydra.experimental.callback import Callback


def slurm_tags() -> dict[str, str]:
    """The SLURM job this process runs in, as run tags (none outside SLURM): ``slurm.job_id`` is the id ``squeue``
    and ``scancel`` take (``<array job>_<task>`` for an array task), ``slurm.node`` the node it ran on."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return {}
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    tags = {"slurm.job_id": f"{array}_{task}" if array and task else env["SLURM_JOB_ID"]}
    if env.get("SLURMD_NODENAME"):
        tags["slurm.node"] = env["SLURMD_NODENAME"]
    return tags


def accounting_answers() -> bool:
    """Whether ``sacct`` works here (``True`` too when there is no ``sacct``: then submitit reports the problem)."""
    if shutil.which("sacct") is None:
        return True
    try:
        return subprocess.run(["sacct", "--noheader", "--jobs=1"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _squeue_watcher() -> Any:
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        """submitit's watcher, reading ``squeue --states=all`` (same columns as its sacct call)."""

        def _make_command(self) -> list[str] | None:
            to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
            if not to_check:
                return None
            return ["squeue", "--noheader", "--states=all", "--format=%i|%T|%N", f"--jobs={','.join(to_check)}"]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            return super().read_info("JobID|State|NodeList\n" + text)

    return SqueueWatcher(delay_s=600)


class _NoResultIsNaN:
    """A submitit job whose ``results()`` is a NaN job return when the job left no result (one line says so)."""

    def __init__(self, job: Any) -> None:
        self._job = job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def results(self) -> list[Any]:
        from hydra.core.utils import JobReturn, JobStatus
        from submitit.core.utils import UncompletedJobError

        try:
            return self._job.results()
        except UncompletedJobError:
            state = self._job.state
            print(f"warning: SLURM job {self._job.job_id} ended {state} without a result; its run is in the sweep summary",
                  file=sys.stderr, flush=True)
            return [JobReturn(status=JobStatus.COMPLETED, _return_value=float("nan"))]


class SlurmStates(Callback):
    """For the sweep's process: job states from ``squeue`` where ``sacct`` does not answer, and jobs that left no
    result counted as NaN instead of ending the sweep (both set up before the launch, undone after it)."""

    def __init__(self) -> None:
        self._undo: list[Any] = []

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if not str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher"):
            return  # any sweep has this callback (conf/config.yaml); it acts on submitit's SLURM launcher only
        import submitit
        from submitit.slurm import slurm

        if not accounting_answers():
            watcher = slurm.SlurmJob.watcher
            slurm.SlurmJob.watcher = _squeue_watcher()
            self._undo.append(lambda: setattr(slurm.SlurmJob, "watcher", watcher))

        executor = submitit.AutoExecutor

        class Executor(executor):  # the launcher builds its executor from submitit.AutoExecutor at launch
            def map_array(self, fn: Any, *iterables: Any) -> list[Any]:
                return [_NoResultIsNaN(job) for job in super().map_array(fn, *iterables)]

        submitit.AutoExecutor = Executor
        self._undo.append(lambda: setattr(submitit, "AutoExecutor", executor))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        while self._undo:
            self._undo.pop()()
