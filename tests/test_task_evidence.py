"""The facts each task must show on real data, with fixed seeds, plus what every task logs to MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.data import images as image_data
from harness.run import execute

MNIST_SUBSET = image_data.LOCAL_COPIES["mnist"][0]
FASHION = image_data.LOCAL_COPIES["fashion_mnist"][0]


@pytest.mark.skipif(not (MNIST_SUBSET / "train-images-idx3-ubyte").is_file(), reason=f"MNIST subset not at {MNIST_SUBSET}")
def test_mnist_subset_cnn_ce_reaches_95_percent(make_cfg, tmp_path):
    result = execute(make_cfg("data=mnist", f"data.root={tmp_path}", "data.download=false"))
    assert result.test["accuracy"] >= 0.95
    assert len(result.history) == 10


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason=f"apt-get install dataset-fashion-mnist ({FASHION})")
def test_full_fashion_mnist_cnn_ce_reaches_89_percent(make_cfg, tmp_path):
    # 3 of the preset's 10 epochs (measured 0.900; 10 epochs reach 0.922 in 3x the time)
    result = execute(make_cfg("data=fashion_mnist", f"data.root={tmp_path}", "data.download=false", "trainer.epochs=3"))
    assert len(result.history) == 3
    assert result.test["accuracy"] >= 0.89


def test_one_percent_positives_weights_and_focal_raise_minority_recall(make_cfg):
    base = ["data=imbalanced", "data.positive_fraction=0.01", "seed=0"]
    plain = execute(make_cfg(*base, "loss=bce")).test
    balanced = execute(make_cfg(*base, "loss=bce", "data.class_weights=balanced")).test
    focal = execute(make_cfg(*base, "loss=focal", "data.class_weights=balanced")).test
    assert balanced["recall_minority"] > plain["recall_minority"] + 0.1
    assert focal["recall_minority"] > plain["recall_minority"] + 0.1


@pytest.mark.parametrize(
    "overrides, plots, metrics",
    [
        (["data=imbalanced", "data.n_samples=2000", "trainer.epochs=2"], {"learning_curves", "pr_curve", "confusion_matrix"},
         {"test/pr_auc", "test/roc_auc", "test/f1", "test/recall_minority", "test/precision", "test/balanced_accuracy",
          "test/log_loss", "test/tuned_f1", "test/tuned_recall", "test/tuned_precision", "test/tuned_threshold"}),
        (["data=segmentation", "data.n_train=32", "data.n_val=8", "data.n_test=8", "trainer.epochs=2"], {"learning_curves", "masks"},
         {"test/miou", "test/dice", "test/pixel_accuracy", "val/miou"}),
    ],
)
def test_each_task_logs_its_metrics_and_plots(make_cfg, store, overrides, plots, metrics):
    result = execute(make_cfg(*overrides, "tracking.log_plots=true"))
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(result.run_id)
    assert metrics <= set(run.data.metrics)
    logged = {Path(a.path).stem for a in client.list_artifacts(result.run_id, "plots")}
    assert logged == plots


def test_multiclass_logs_confusion_and_reliability(make_cfg, store, tmp_path):
    from fixtures import write_idx_dataset

    write_idx_dataset(tmp_path / "MNIST" / "raw")
    result = execute(make_cfg("data=mnist", f"data.root={tmp_path}", "data.download=false", "trainer.epochs=2", "tracking.log_plots=true"))
    client = MlflowClient(tracking_uri=store)
    assert {"test/accuracy", "test/macro_f1", "test/nll", "test/ece"} <= set(client.get_run(result.run_id).data.metrics)
    assert {Path(a.path).stem for a in client.list_artifacts(result.run_id, "plots")} == {"learning_curves", "confusion_matrix", "reliability"}
    assert result.test["accuracy"] > 0.5  # the fixture's digits are a bar at a class-specific row: learnable


def test_bf16_autocast_runs_on_cpu(make_cfg):
    result = execute(make_cfg("data=segmentation", "data.n_train=32", "data.n_val=8", "data.n_test=8", "trainer.epochs=2",
                              "trainer.precision=bf16"))
    assert 0 <= result.test["miou"] <= 1


@pytest.mark.slow
@pytest.mark.skipif(not (MNIST_SUBSET / "train-images-idx3-ubyte").is_file(), reason=f"MNIST subset not at {MNIST_SUBSET}")
def test_long_tail_logit_adjustment_beats_ce_on_balanced_accuracy(make_cfg, tmp_path):
    """MNIST subset with a 100:1 long tail, 5 epochs, 3 seeds: logit-adjusted CE (Balanced Softmax) beats plain CE
    on test balanced accuracy in every seed (paired). Measured here: +0.110, +0.154, +0.139 (seeds 0-2)."""
    base = ["data=mnist", f"data.root={tmp_path}", "data.download=false", "data.imbalance_ratio=100",
            "data.train_size=6000", "trainer.epochs=5"]
    gains = []
    for seed in range(3):
        ce = execute(make_cfg(*base, f"seed={seed}", "loss=ce")).test["balanced_accuracy"]
        adjusted = execute(make_cfg(*base, f"seed={seed}", "loss=logit_adjusted_ce")).test["balanced_accuracy"]
        gains.append(adjusted - ce)
    assert min(gains) > 0.02, gains
