"""The study presets: every job of every study composes and validates; variants set what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.__main__ import CONF_DIR
from harness.callbacks import expand_sweep, seedless
from harness.config import RULES, validate
from harness.run import variant_of

STUDIES = {"robust_regression": 450, "robust_regression_contamination": 150, "imbalanced_binary": 270, "mnist_losses": 66,
           "segmentation_losses": 80, "long_tail": 60, "mnist_noise_long": 15, "robust_regression_lr": 1800,
           "imbalanced_binary_lr": 1080, "robust_regression_contamination_lr": 600, "long_tail_lr": 300}

# the studies run as one sweep per condition, each with the overrides its README's commands add
CONTAMINATION = [["+tracking.tags.condition=gross_one_sided"],
                 ["+tracking.tags.condition=symmetric", "data.outlier_mode=symmetric"],
                 ["+tracking.tags.condition=moderate", "data.outlier_scale=4"],
                 ["+tracking.tags.condition=leverage", "data.leverage_fraction=1.0"]]
CONDITIONS = {"robust_regression_contamination": CONTAMINATION, "robust_regression_contamination_lr": CONTAMINATION}


@pytest.mark.parametrize("study, jobs", STUDIES.items())
def test_every_job_of_every_study_validates(study, jobs):
    raw = OmegaConf.load(Path(CONF_DIR) / "experiment" / f"{study}.yaml")
    params = [f"{k}={v}" for k, v in raw.hydra.sweeper.params.items()]
    readme = (Path(CONF_DIR).parent / "experiments" / study / "README.md").read_text()
    for condition in CONDITIONS.get(study, [[]]):
        assert all(o in readme for o in condition)  # the README's command runs this condition
        expanded = expand_sweep([*params, f"experiment={study}", *condition])
        assert expanded is not None and len(expanded) == jobs
        # as the sweep's own check: jobs that differ only in their seed compose once, each seed is checked
        distinct: dict[tuple[str, ...], None] = {}
        for job in expanded:
            key, seed = seedless(job)
            assert RULES["seed"].ok(seed), job
            distinct[key] = None
        assert len(distinct) < jobs
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            for job in distinct:
                cfg = compose("config", overrides=list(job))
                validate(cfg)
                assert cfg.tracking.experiment == study
                assert cfg.tracking.tags.get("condition") == (condition[0].split("=")[1] if condition else None)


def test_variants_set_loss_options_weights_and_tag():
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["data=imbalanced", "variant=bce_balanced"])
        assert cfg.loss.name == "bce" and cfg.data.class_weights == "balanced" and cfg.tracking.tags.variant == "bce_balanced"
        cfg = compose("config", overrides=["data=mnist", "variant=ce_smooth"])
        assert cfg.loss.name == "ce" and cfg.loss.label_smoothing == 0.1 and cfg.tracking.tags.variant == "ce_smooth"
        cfg = compose("config", overrides=["data=mnist", "loss=poly1"])
        assert cfg.tracking.tags.variant is None and variant_of(cfg) == "poly1"  # without a variant, the loss names the arm
