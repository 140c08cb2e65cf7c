"""Sweep jobs trained as one stack (``trainer.vectorize=true``, :mod:`harness.vectorize`), each still its own run.

:func:`plan` groups a sweep's jobs: those with ``trainer.vectorize=true`` and the same :func:`~harness.vectorize.stack_key`
(at most ``trainer.max_stack`` together), the others alone. :class:`Stack` builds its members as their own jobs would
(:func:`harness.run.prepare`), starts one MLflow child run per member, trains them in one loop logging each member's
epochs to its run, and then :meth:`Stack.finish` completes each member as its own Hydra job: test metrics, plots,
best epoch, summary, the value a sweeper reads. The launcher (``hydra_plugins/harness_launcher``) runs a group whose
stack cannot be built (:class:`~harness.vectorize.NotStackable`, or a job whose config or data fails) one job at a
time, saying why.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Sequence

from omegaconf import DictConfig

from .data import DataError
from .config import validate
from .errors import ConfigError
from .run import JOB_ERRORS, Opened, Prepared, RunResult, end_failed, finish, interrupts, job_outcome, log_setup, marks_status
from .run import prepare, start
from .tracking import TrackingError
from .vectorize import Member, NotStackable, check_members, fit_stacked, refusal, slower_stacked, stack_key

BUILD_ERRORS = (ConfigError, DataError, TrackingError, NotStackable)


def plan(configs: Sequence[DictConfig]) -> tuple[list[list[int]], dict[int, str]]:
    """The order to run ``configs`` in, as groups of job indices (a group of two or more is to be stacked), and why
    jobs that asked for stacking run alone (job index -> reason)."""
    groups: dict[str, list[int]] = {}
    order: list[list[int]] = []
    alone: dict[int, str] = {}
    for i, cfg in enumerate(configs):
        if not cfg.trainer.get("vectorize"):
            order.append([i])
            continue
        try:
            validate(cfg)
        except ConfigError as err:  # the job reports it itself, in one line, when it runs
            order.append([i])
            alone[i] = f"its config is not valid ({err})"
            continue
        reason = refusal(cfg)
        if reason:
            order.append([i])
            alone[i] = reason
            continue
        key = stack_key(cfg)
        group = groups.get(key)
        if group is None or len(group) >= int(cfg.trainer.get("max_stack", 64)):
            group = groups[key] = []
            order.append(group)
        group.append(i)
    for group in order:
        if len(group) == 1 and group[0] not in alone and configs[group[0]].trainer.get("vectorize"):
            alone[group[0]] = "no other job of the sweep differs from it only in seed or in numeric loss or data settings"
    return order, alone


class Stack:
    """Jobs ``configs`` (task configs, without ``hydra``) trained together, under sweep parent run ``parent``;
    ``enter(i)`` is called before member ``i`` is built, its run started or its setup logged."""

    def __init__(self, configs: Sequence[DictConfig], parent: str | None, enter: Callable[[int], None] | None = None) -> None:
        self.configs, self.parent = list(configs), parent
        self.enter = enter or (lambda i: None)  # makes member i's job current (its HydraConfig) while it is built
        self.prepared: list[Prepared] = []
        self.opened: list[Opened] = []
        self.members: list[Member] = []
        self.seconds = 0.0
        self.failure: Exception | None = None  # an error of the whole loop: every member's job reports it

    def build(self) -> None:
        """Build every member as its own job would and start their runs.

        Raises one of :data:`BUILD_ERRORS` before any run is created when the members cannot be built or stacked
        (a store that fails part-way through creating their runs deletes those already created: the jobs then run one
        by one, each creating its own).
        """
        self.enter(0)
        self.prepared = [prepare(self.configs[0])]
        reason = slower_stacked([self._member(self.prepared[0])])
        if reason:  # known from the first member: the others are not built twice
            raise NotStackable(reason)
        for i, cfg in enumerate(self.configs[1:], 1):
            self.enter(i)
            self.prepared.append(prepare(cfg))
        self.members = [self._member(p) for p in self.prepared]
        check_members(self.members)
        for i, p in enumerate(self.prepared):
            self.enter(i)
            try:
                self.opened.append(start(p, self.parent))
            except BaseException:  # the store failed part-way: the jobs run one by one, so these runs go
                for o in self.opened:
                    with contextlib.suppress(Exception):
                        o.run.end("KILLED")
                        o.run.client.delete_run(o.run.run_id)
                self.opened = []
                raise

    def train(self) -> None:
        """Train the built members in one loop, logging each member's epochs to its run. An error during training
        ends every member's run FAILED (KILLED on Ctrl-C/SIGTERM) and propagates; a member whose loss turns
        non-finite ends FAILED alone."""
        with interrupts(), contextlib.ExitStack() as marks:
            for o in self.opened:
                marks.enter_context(marks_status(o.run))
            for i, (m, p, o) in enumerate(zip(self.members, self.prepared, self.opened)):
                self.enter(i)
                m.best = log_setup(o.run, p)
                m.on_epoch = lambda epoch, metrics, run=o.run: run.log_metrics(metrics, step=epoch)
                o.run.set_tags({"vectorize.members": str(len(self.members))})
            started = time.perf_counter()
            try:
                fit_stacked(self.members, self.configs[0])
            except Exception as err:  # noqa: BLE001 - as alone, each job fails with it (its run already ended FAILED)
                self.failure = err
                raise
            self.seconds = time.perf_counter() - started
        for m, o in zip(self.members, self.opened):
            if m.error is not None:
                end_failed(o.run, m.error)

    def abandon(self) -> None:
        """End, KILLED, the runs of members whose jobs did not get to finish them (the sweep was interrupted)."""
        for o in self.opened:
            if o.run.status is None:
                with contextlib.suppress(Exception):
                    o.run.set_tags({"failure_reason": "interrupted before its job finished"})
                    o.run.end("KILLED")

    @staticmethod
    def _member(p: Prepared) -> Member:
        return Member(p.model, p.criterion, p.data, int(p.cfg.seed))

    def finish(self, i: int) -> float:
        """Member ``i``'s end as its own job (:func:`harness.run.job_outcome`): its test metrics, plots and best
        epoch logged and its run ended, or its training failure reported. Its ``time/train_s`` is its share of the
        loop (loop time / members); the loop's time is its ``vectorize.loop_s`` tag."""
        m, p, o = self.members[i], self.prepared[i], self.opened[i]

        def complete() -> RunResult:
            if self.failure is not None:
                raise self.failure
            if m.error is not None:
                raise m.error
            with interrupts(), marks_status(o.run):
                o.run.set_tags({"vectorize.loop_s": f"{self.seconds:.3f}"})
                return finish(o, p, m.history, m.best, self.seconds / len(self.members))

        return job_outcome(complete, p.cfg, self.parent)


__all__ = ["BUILD_ERRORS", "JOB_ERRORS", "Stack", "plan"]
