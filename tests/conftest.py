"""Shared fixtures: compose the real Hydra config, and a fresh SQLite store per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from harness.__main__ import CONF_DIR

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A tracking URI for a fresh SQLite store inside the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_cfg(store: str):
    """``make_cfg("loss=huber", ...)`` composes conf/ with overrides, progress bar off and the test's store."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            return compose(
                "config",
                overrides=["trainer.progress=false", f"tracking.uri={store}", "tracking.log_plots=false", *overrides],
            )

    return make
