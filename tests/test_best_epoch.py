"""trainer.keep_best: the test metrics of the model at its best validation epoch (early stopping's result)."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from harness.run import execute
from harness.train import BestEpoch


def test_best_epoch_keeps_the_first_best_and_ignores_nan():
    model = torch.nn.Linear(2, 1)
    best = BestEpoch("pr_auc", lower_is_better=False)
    for epoch, value in enumerate([0.5, 0.7, math.nan, 0.7, 0.6], start=1):
        with torch.no_grad():
            model.bias.fill_(epoch)
        best.update(epoch, value, model)
    assert (best.epoch, best.value) == (2, 0.7)
    assert best.state["bias"].item() == 2.0 and best.state["bias"].device.type == "cpu"
    lower = BestEpoch("rmse", lower_is_better=True)
    for epoch, value in enumerate([3.0, 1.0, 2.0], start=1):
        lower.update(epoch, value, model)
    assert lower.epoch == 2
    never = BestEpoch("pr_auc", lower_is_better=False)
    never.update(1, math.nan, model)
    assert never.epoch is None and never.state is None


def test_best_metrics_equal_a_run_stopped_at_that_epoch(make_cfg, store):
    """Without a learning-rate schedule, the model at the best validation epoch k of a 12-epoch run is the model of
    the same run stopped after k epochs: its best/ metrics equal that run's test/ metrics."""
    common = ("data=imbalanced", "data.n_samples=3000", "data.positive_fraction=0.05", "optim.scheduler=none",
              "optim.lr=0.03", "seed=3")
    long = execute(make_cfg(*common, "trainer.epochs=12"))
    client = MlflowClient(tracking_uri=store)
    logged = client.get_run(long.run_id).data.metrics
    val = [e["val/pr_auc"] for e in long.history]
    k = val.index(max(val)) + 1
    assert logged["best/epoch"] == k and long.best["best/epoch"] == k
    assert 1 <= k < 12, "the test needs a run whose best epoch is not its last; pick another seed"
    short = execute(make_cfg(*common, f"trainer.epochs={k}"))
    for name, value in short.test.items():
        assert logged[f"best/{name}"] == pytest.approx(value, abs=1e-6), name
    assert logged["test/pr_auc"] == pytest.approx(long.test["pr_auc"])  # the last epoch's are still test/


def test_keep_best_off_logs_no_best_metrics(make_cfg, store):
    result = execute(make_cfg("data=outliers", "trainer.epochs=2", "trainer.keep_best=false"))
    assert result.best == {}
    assert not any(k.startswith("best/") for k in MlflowClient(tracking_uri=store).get_run(result.run_id).data.metrics)
