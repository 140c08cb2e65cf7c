"""``hydra/sweeper=optuna``: :mod:`harness.tuning` behind Hydra's Sweeper interface."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """Tune with Optuna; every trial is one job of the configured launcher. Settings: ``hydra.sweeper``
    (conf/hydra/sweeper/optuna.yaml)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.launcher: Any = None
        self.config: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from harness.callbacks import PARENT_ENV
        from harness.tracking import open_store, resolve_uri

        from harness.tuning import run_study

        parent_id = os.environ.get(PARENT_ENV)
        set_tags = None
        if parent_id:
            client = open_store(resolve_uri(self.config.tracking.uri))

            def set_tags(tags: dict[str, str]) -> None:
                try:
                    for key, value in tags.items():
                        client.set_tag(parent_id, key, value)
                except Exception as err:  # noqa: BLE001 - the server gone: the sweep's end reports it
                    print(f"warning: the best trial's tags did not reach parent run {parent_id}: "
                          f"{' '.join(str(err).split())[:200]}", file=sys.stderr, flush=True)

        return run_study(self.config.hydra.sweeper, self.launcher, arguments, Path(self.config.hydra.sweep.dir), set_tags)
