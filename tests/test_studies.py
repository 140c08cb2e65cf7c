"""The study presets: every job of every study composes and validates; variants set what they say."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from harness import tuning
from harness.__main__ import CONF_DIR
from harness.callbacks import expand_sweep, seedless, sweep_jobs
from harness.config import RULES, validate
from harness.run import variant_of

STUDIES = {"robust_regression": 450, "robust_regression_contamination": 150, "imbalanced_binary": 270, "mnist_losses": 220,
           "segmentation_losses": 80, "long_tail": 60, "mnist_noise_long": 21, "robust_regression_lr": 1800,
           "imbalanced_binary_lr": 1350, "robust_regression_contamination_lr": 600, "long_tail_lr": 300,
           "segmentation_losses_lr": 240, "fashion_mnist_noise": 60}
EXPERIMENTS = Path(CONF_DIR).parent / "experiments"


def readme_commands(study: str) -> list[list[str]]:
    """The overrides of every ``python -m harness -m`` command in the study's README, in order (shell comments
    dropped). Every line that runs a sweep must be written so: nothing is left unchecked."""
    lines = (EXPERIMENTS / study / "README.md").read_text().splitlines()
    sweeps = [line for line in lines if re.search(r"-m harness (-m|--multirun)\b", line)]
    assert all(line.startswith("python -m harness -m ") for line in sweeps), sweeps
    return [shlex.split(line, comments=True)[4:] for line in sweeps]


def experiment_of(overrides: list[str] | tuple[str, ...]) -> str:
    found = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
    assert len(found) == 1, f"no single experiment= in {overrides}"
    return found[0]


def test_every_study_has_a_readme_that_runs_its_preset():
    assert sorted(STUDIES) == sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml") if not p.stem.startswith("tune_"))
    for study, jobs in STUDIES.items():
        raw = OmegaConf.load(Path(CONF_DIR) / "experiment" / f"{study}.yaml")
        expanded = expand_sweep([f"{k}={v}" for k, v in raw.hydra.sweeper.params.items()])
        assert expanded is not None and len(expanded) == jobs, study
        assert len({seedless(job)[0] for job in expanded}) < jobs  # seeds are swept: distinct jobs compose once
        assert raw.tracking.experiment == study
        assert any(experiment_of(command) == study for command in readme_commands(study)), study


@pytest.mark.parametrize("study", STUDIES)
def test_every_job_of_every_readme_command_validates(study):
    """Each command of a study's README, as its sweep checks it (harness/callbacks.py): the preset's sweeper params,
    then the command's overrides (the later wins); jobs that differ only in their seed compose once, each seed is
    checked. An Optuna search has its space checked as its sweeper does and its fixed overrides composed."""
    parser = OverridesParser.create()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        distinct: dict[tuple[str, ...], None] = {}
        for command in readme_commands(study):
            parsed = parser.parse_overrides(command)
            hydra_keys = [o.input_line for o in parsed if o.is_hydra_override()]
            task = [o.input_line for o in parsed if not o.is_hydra_override()]
            cfg = compose("config", overrides=[f"experiment={experiment_of(task)}", *hydra_keys], return_hydra_config=True)
            if str(cfg.hydra.sweeper.get("_target_", "")).endswith("OptunaSweeper"):
                jobs = [tuning.check(cfg.hydra.sweeper, task)[1]]
            else:
                jobs = sweep_jobs(cfg.hydra.sweeper, task)
                assert jobs, command  # None: not the basic sweeper, or syntax it cannot expand
            for job in jobs:
                key, seed = seedless(job)
                assert seed is None or RULES["seed"].ok(seed), job
                distinct[key] = None
        for job in distinct:
            cfg = compose("config", overrides=list(job))
            validate(cfg)
            named = [o.split("=", 1)[1] for o in job if o.startswith("tracking.experiment=")]
            assert cfg.tracking.experiment == (named[-1] if named else experiment_of(job))  # a command may name its own
            condition = [o.split("=", 1)[1] for o in job if o.startswith("+tracking.tags.condition=")]
            assert cfg.tracking.tags.get("condition") == (condition[0] if condition else None)


def test_variants_set_loss_options_weights_and_tag():
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["data=imbalanced", "variant=bce_balanced"])
        assert cfg.loss.name == "bce" and cfg.data.class_weights == "balanced" and cfg.tracking.tags.variant == "bce_balanced"
        cfg = compose("config", overrides=["data=mnist", "variant=ce_smooth"])
        assert cfg.loss.name == "ce" and cfg.loss.label_smoothing == 0.1 and cfg.tracking.tags.variant == "ce_smooth"
        cfg = compose("config", overrides=["data=mnist", "loss=poly1"])
        assert cfg.tracking.tags.variant is None and variant_of(cfg) == "poly1"  # without a variant, the loss names the arm
