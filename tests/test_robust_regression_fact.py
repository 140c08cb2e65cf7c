"""The first fact the product shows: with 10% outliers, Huber and MAE recover the clean fit, MSE does not,
and our trained linear models agree with scikit-learn's estimators on the same training data."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import HuberRegressor, LinearRegression

from harness.data import build_data
from harness.run import execute


def sklearn_test_rmse(estimator, data) -> float:
    estimator.fit(data.train.x.numpy(), data.train.y.numpy())
    pred = estimator.predict(data.test.x.numpy())
    return float(np.sqrt(np.mean((pred - data.test.y.numpy()) ** 2)))


@pytest.mark.parametrize("seed", [0, 1])
def test_robust_losses_beat_mse_and_match_sklearn(make_cfg, store, seed):
    rmse = {loss: execute(make_cfg(f"loss={loss}", f"seed={seed}")).test["rmse"] for loss in ("mse", "mae", "huber")}
    cfg = make_cfg(f"seed={seed}")
    noise = cfg.data.noise_std
    assert rmse["huber"] < 1.15 * noise and rmse["mae"] < 1.15 * noise
    assert rmse["mse"] >= 2 * rmse["huber"] and rmse["mse"] >= 2 * rmse["mae"]

    data = build_data(cfg.data, seed)
    huber_ref = sklearn_test_rmse(HuberRegressor(max_iter=1000), data)
    ols_ref = sklearn_test_rmse(LinearRegression(), data)
    assert rmse["huber"] == pytest.approx(huber_ref, rel=0.2)
    assert rmse["mse"] == pytest.approx(ols_ref, rel=0.2)

    runs = MlflowClient(tracking_uri=store).search_runs(
        [MlflowClient(tracking_uri=store).get_experiment_by_name("loss-harness").experiment_id]
    )
    assert sorted(r.data.tags["loss"] for r in runs) == ["huber", "mae", "mse"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_same_config_and_seed_give_identical_metrics(make_cfg):
    a = execute(make_cfg("loss=huber", "model=mlp", "trainer.epochs=5", "seed=4"))
    b = execute(make_cfg("loss=huber", "model=mlp", "trainer.epochs=5", "seed=4"))
    c = execute(make_cfg("loss=huber", "model=mlp", "trainer.epochs=5", "seed=5"))
    assert a.history == b.history and a.test == b.test
    assert a.test != c.test
    assert a.run_id != b.run_id
