"""``hydra/launcher=harness`` (the default): Hydra's basic launcher, except that jobs with ``trainer.vectorize=true``
that differ only in seed (or in numeric loss or data settings) are trained together in one loop
(:mod:`harness.stack_jobs`); each is still its own Hydra job and MLflow run."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)


class HarnessLauncher(BasicLauncher):
    """Runs a sweep's jobs one after another in this process, stacking those that ask for it."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        if not job_overrides:
            return []
        first = self._compose(job_overrides[0], initial_job_idx)
        if not first.trainer.get("vectorize") and not any("vectorize" in o for job in job_overrides for o in job):
            return super().launch(job_overrides, initial_job_idx)  # nothing asks for stacking: Hydra's basic launcher
        configs = [first] + [self._compose(o, initial_job_idx + k) for k, o in enumerate(job_overrides[1:], 1)]

        from harness.callbacks import PARENT_ENV
        from harness.run import own_threads
        from harness.stack_jobs import BUILD_ERRORS, Stack, plan

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        order, alone = plan(configs)
        stacked = sum(len(g) for g in order if len(g) > 1)
        log.info(f"Launching {len(configs)} jobs locally, {stacked} of them in {sum(len(g) > 1 for g in order)} stack(s)")
        returns: list[JobReturn | None] = [None] * len(configs)
        for group in order:
            with own_threads():  # a stack's trainer.threads holds for its own group only, as execute's for its run
                stack = None
                if len(group) > 1:
                    names = job_list([initial_job_idx + i for i in group])
                    def enter(k: int, group: list[int] = group) -> None:
                        HydraConfig.instance().set_config(configs[group[k]])

                    try:
                        stack = Stack([_task_config(configs[i]) for i in group], os.environ.get(PARENT_ENV), enter)
                        stack.build()
                    except BUILD_ERRORS as err:
                        print(f"vectorize: jobs {names} run one by one: {err}", file=sys.stderr, flush=True)
                        stack = None
                    else:
                        print(f"vectorize: jobs {names} train together ({len(group)} runs in one loop)", file=sys.stderr, flush=True)
                        try:
                            stack.train()
                        except Exception as err:  # noqa: BLE001 - every member's job fails with it, as each would alone
                            print(f"vectorize: jobs {names} failed in training: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                elif group[0] in alone:
                    print(f"vectorize: job #{initial_job_idx + group[0]} runs alone: {alone[group[0]]}", file=sys.stderr, flush=True)
                try:
                    for pos, i in enumerate(group):
                        log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(job_overrides[i]))}")
                        task = self.task_function if stack is None else (lambda cfg, pos=pos, stack=stack: stack.finish(pos))
                        returns[i] = run_job(
                            hydra_context=self.hydra_context, task_function=task, config=configs[i],
                            job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
                        )
                        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                finally:
                    if stack is not None:
                        stack.abandon()
        return [r for r in returns if r is not None]

    def _compose(self, overrides: Sequence[str], number: int) -> DictConfig:
        """Job ``number``'s full config (with ``hydra``), as the basic launcher composes it."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = number
        return cfg


def job_list(numbers: list[int]) -> str:
    """``#0-#15, #20`` for jobs 0 to 15 and 20: runs of consecutive numbers as ranges."""
    parts, start = [], None
    for k, n in enumerate(numbers):
        start = n if start is None else start
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            parts.append(f"#{start}" if start == n else f"#{start}-#{n}" if n > start + 1 else f"#{start}, #{n}")
            start = None
    return ", ".join(parts)


def _task_config(cfg: DictConfig) -> DictConfig:
    """A job's config as its task function gets it: without the ``hydra`` node."""
    task = cfg.copy()
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task
