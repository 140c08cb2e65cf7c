"""The config tree and the loss registry stay in sync: every loss is selectable, every key is a real argument."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import losses
from harness.__main__ import CONF_DIR
from harness.tasks import trainable_losses

LOSS_DIR = Path(CONF_DIR) / "loss"


def test_every_trainable_loss_has_a_config():
    assert {p.stem for p in LOSS_DIR.glob("*.yaml")} == set(trainable_losses())
    assert set(losses.available()) - set(trainable_losses()) == set(losses.available("adversarial"))


@pytest.mark.parametrize("path", sorted(LOSS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_loss_config_keys_are_valid_arguments(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert cfg.pop("name") == path.stem
    spec = losses.spec(path.stem)
    spec.check_params(cfg)  # raises ValueError naming an unknown key or a bad value
    for key, value in cfg.items():
        default = spec.params[key]
        if (path.stem, key) == ("poisson", "log_input"):
            continue  # deliberate: the harness's raw outputs are log-rates (see conf/loss/poisson.yaml)
        assert value == default, f"{path.stem}.{key}: config {value} differs from the function's {default}"
