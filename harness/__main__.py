"""``python -m harness [overrides]``: one training run (or a sweep with ``-m``) from the Hydra config in ``conf/``."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from .run import main_job

    return main_job(cfg)


if __name__ == "__main__":
    main()
