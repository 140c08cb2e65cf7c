"""The study presets: every job of every study composes and validates; variants set what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.__main__ import CONF_DIR
from harness.callbacks import expand_sweep
from harness.config import validate
from harness.run import variant_of

STUDIES = {"robust_regression": 450, "robust_regression_contamination": 150, "imbalanced_binary": 270, "mnist_losses": 66, "segmentation_losses": 80, "long_tail": 30, "mnist_noise_long": 15}


SAMPLED = {"robust_regression_lr": (1800, 9), "imbalanced_binary_lr": (1080, 13)}  # large studies: every 9th (13th) job (each arm, rate and condition appears)


@pytest.mark.parametrize("study, jobs", [*STUDIES.items(), *((s, n) for s, (n, _) in SAMPLED.items())])
def test_every_job_of_every_study_validates(study, jobs):
    raw = OmegaConf.load(Path(CONF_DIR) / "experiment" / f"{study}.yaml")
    params = [f"{k}={v}" for k, v in raw.hydra.sweeper.params.items()]
    expanded = expand_sweep([*params, f"experiment={study}"])
    assert expanded is not None and len(expanded) == jobs
    stride = SAMPLED.get(study, (jobs, 1))[1]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for job in expanded[::stride]:
            cfg = compose("config", overrides=job)
            validate(cfg)
            assert cfg.tracking.experiment == study
    assert (Path(CONF_DIR).parent / "experiments" / study / "README.md").is_file()


def test_variants_set_loss_options_weights_and_tag():
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["data=imbalanced", "variant=bce_balanced"])
        assert cfg.loss.name == "bce" and cfg.data.class_weights == "balanced" and cfg.tracking.tags.variant == "bce_balanced"
        cfg = compose("config", overrides=["data=mnist", "variant=ce_smooth"])
        assert cfg.loss.name == "ce" and cfg.loss.label_smoothing == 0.1 and cfg.tracking.tags.variant == "ce_smooth"
        cfg = compose("config", overrides=["data=mnist", "loss=poly1"])
        assert cfg.tracking.tags.variant is None and variant_of(cfg) == "poly1"  # without a variant, the loss names the arm
