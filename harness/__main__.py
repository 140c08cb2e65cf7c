"""``python -m harness [overrides]`` (or ``loss-harness``): one training run (or a sweep with ``-m``) from the Hydra
config tree: ``harness/conf`` in an installed package, ``conf/`` at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig


def _conf_dir() -> str:
    here = Path(__file__).resolve().parent
    packaged = here / "conf"  # a wheel ships conf/ as harness/conf
    return str(packaged if (packaged / "config.yaml").is_file() else here.parent / "conf")


CONF_DIR = _conf_dir()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from .run import main_job

    return main_job(cfg)


if __name__ == "__main__":
    main()
