"""On a CUDA device: end-to-end runs against CPU, half precision, ``trainer.device=auto``, no sync in the training step.

What a CPU-only CI cannot see; ``python -m benchmarks.gpu`` runs these (``pytest -m cuda``); they skip without CUDA.
Each run goes through ``harness.run.execute`` with plots on, into a temporary MLflow store, and is compared with the
same config and seed on CPU (precision 32): it must end FINISHED with its plots logged, finite test metrics, and its
test metric within

- fp32: relative 1e-3 for RMSE; absolute 0.01 for PR-AUC (MLPs: no TF32 involved); absolute 0.02 for accuracy and
  mIoU (cuDNN convolutions run in TF32 by default, ~1e-3 relative per convolution, which moves these metrics by up
  to ~0.007 after 2-3 epochs);
- bf16 and 16-mixed (against CPU fp32; 16-mixed has no CPU form): relative 0.05 for RMSE, absolute 0.05 otherwise.

Multiclass is among them (the local MNIST subset, else a small synthetic MNIST-format set): every multiclass run on
CUDA used to crash at its end, in the reliability plot.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir

from benchmarks.gpu import count_syncs
from fixtures import write_idx_dataset
from harness.__main__ import CONF_DIR
from harness.run import execute

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

REPO = Path(__file__).resolve().parent.parent
MNIST_LOCAL = REPO.parent / "shared" / "datasets" / "MNIST" / "raw"
EXPERIMENT = "cuda-tests"
DEVICE = "cuda"

# task: overrides, compared test metric, relative (else absolute) tolerance, plots logged, fp32 tolerance
TASKS = {
    "regression": (["data=outliers", "trainer.epochs=10"], "rmse", True, 2, 1e-3),
    "binary": (["data=imbalanced", "trainer.epochs=4"], "pr_auc", False, 3, 0.01),
    "segmentation": (["data=segmentation", "trainer.epochs=3"], "miou", False, 2, 0.02),
    "segmentation_4_classes": (["data=segmentation", "data.num_classes=4", "trainer.epochs=3"], "miou", False, 2, 0.02),
    "multiclass": (None, "accuracy", False, 3, 0.02),  # overrides: see the multiclass fixture
}
HALF_PRECISION_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory) -> list[str]:
    """``data=mnist`` from the local MNIST subset when present, else from a small synthetic set in MNIST's format."""
    if all((MNIST_LOCAL / f).is_file() or (MNIST_LOCAL / f"{f}.gz").is_file() for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
    )):
        return ["data=mnist", "data.download=false", "trainer.epochs=2"]
    root = tmp_path_factory.mktemp("mnist")
    write_idx_dataset(root / "MNIST" / "raw", n_train=600, n_test=200)
    return ["data=mnist", f"data.root={root}", "data.download=false", "trainer.epochs=2"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory, multiclass):
    """``run(task, device, precision)`` -> (RunResult, MLflow run, plot paths); ``cpu(task)``: the CPU fp32 test metrics
    (computed once per task)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("cuda-runs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    references: dict[str, dict[str, float]] = {}

    def overrides(task: str) -> list[str]:
        return multiclass if task == "multiclass" else TASKS[task][0]

    def run(task: str, device: str = DEVICE, precision: str = "32", extra: tuple[str, ...] = ()):
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[
                *overrides(task), *extra, f"trainer.device={device}", f"trainer.precision={precision}",
                "trainer.progress=false", f"tracking.uri={uri}", f"tracking.experiment={EXPERIMENT}", "tracking.log_plots=true",
            ])
        result = execute(cfg)
        return result, client.get_run(result.run_id), [a.path for a in client.list_artifacts(result.run_id, "plots")]

    def cpu(task: str) -> dict[str, float]:
        if task not in references:
            references[task] = run(task, "cpu")[0].test
        return references[task]

    return SimpleNamespace(run=run, cpu=cpu, overrides=overrides)


def assert_finished(task: str, result, run, plots: list[str], device: str = DEVICE) -> None:
    assert run.info.status == "FINISHED"
    assert run.data.params["device"].startswith(device)
    assert len(plots) >= TASKS[task][3], plots
    assert all(math.isfinite(v) for v in result.test.values()), result.test


def assert_within(task: str, value: float, cpu: float, tolerance: float) -> None:
    metric, relative = TASKS[task][1], TASKS[task][2]
    allowed = tolerance * abs(cpu) if relative else tolerance
    assert abs(value - cpu) <= allowed, f"{task}: test/{metric} {value:.5f} on {DEVICE}, {cpu:.5f} on cpu (allowed {allowed:.4g})"


@pytest.mark.parametrize("task", list(TASKS))
def test_run_on_cuda_finishes_with_plots_and_matches_cpu(task, runner):
    cpu = runner.cpu(task)
    result, run, plots = runner.run(task)
    assert_finished(task, result, run, plots)
    assert_within(task, result.test[TASKS[task][1]], cpu[TASKS[task][1]], TASKS[task][4])


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
@pytest.mark.parametrize("task", ["regression", "multiclass", "segmentation"])
def test_half_precision_on_cuda_finishes_and_stays_near_cpu_fp32(task, precision, runner):
    cpu = runner.cpu(task)
    result, run, plots = runner.run(task, precision=precision)
    assert_finished(task, result, run, plots)
    assert_within(task, result.test[TASKS[task][1]], cpu[TASKS[task][1]], HALF_PRECISION_TOLERANCE)


def test_auto_device_picks_cuda(runner):
    result, run, plots = runner.run("regression", device="auto", extra=("trainer.epochs=1",))
    assert_finished("regression", result, run, plots, device="cuda")


def _count_syncs(fn) -> tuple[int, Counter]:
    """Synchronizing CUDA operations during ``fn()`` and their source lines (the GPU check's own counter)."""
    return count_syncs(fn, "cuda")


def test_sync_counting_sees_a_sync():
    count, _ = _count_syncs(lambda: torch.ones(1, device="cuda").item())
    assert count >= 1


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass", "segmentation", "segmentation_4_classes"])
def test_training_step_does_not_synchronise_with_the_host(task, runner):
    """One epoch of ``fit`` with the task's natural loss at two batch sizes (~4x the steps): the number of host syncs
    (the per-epoch ones: batch order to the device, step losses and validation metrics read) must not grow."""
    from harness.criterion import build_criterion
    from harness.data import build_data
    from harness.models import build_model
    from harness.train import fit

    def config(batch_size: int | None = None):
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            return compose("config", overrides=[
                *runner.overrides(task), "trainer.epochs=1", "trainer.progress=false", f"trainer.device={DEVICE}",
                *([f"trainer.batch_size={batch_size}"] if batch_size else []),
            ])

    cfg = config()
    data = build_data(cfg.data, cfg.seed)
    counts = data.class_counts() if data.num_classes else None
    data = data.to(DEVICE)

    def epoch(batch_size: int):
        run_cfg = config(batch_size)

        def go() -> None:
            criterion = build_criterion(run_cfg, data.task, data.num_classes, counts).to(torch.device(DEVICE))
            torch.manual_seed(0)
            model = build_model(run_cfg.model, data, criterion.num_outputs).to(DEVICE)
            fit(model, criterion, data, run_cfg)
        return go

    big = int(cfg.trainer.batch_size)
    small = max(1, big // 4)
    epoch(big)(), epoch(small)()  # warm-up
    n_big, where_big = _count_syncs(epoch(big))
    n_small, where_small = _count_syncs(epoch(small))
    steps = (-(-len(data.train) // big), -(-len(data.train) // small))
    assert n_small <= n_big, (
        f"{task}: {n_big} host syncs in an epoch of {steps[0]} steps, {n_small} in one of {steps[1]} steps; "
        f"at {steps[0]} steps: {dict(where_big)}; at {steps[1]} steps: {dict(where_small)}"
    )
