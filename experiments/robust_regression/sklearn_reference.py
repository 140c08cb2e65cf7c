"""Reference rows for the robust_regression study: scikit-learn's LinearRegression (OLS) and HuberRegressor
(epsilon 1.35, scale estimated jointly) fitted on exactly the training data of each (outlier_fraction, seed) job,
scored on the same clean test set, and logged into the study's experiment as runs with variant=sklearn_ols and
variant=sklearn_huber.

    python experiments/robust_regression/sklearn_reference.py [--tracking-uri URI]
"""

from __future__ import annotations

import argparse

import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.linear_model import HuberRegressor, LinearRegression

from harness.__main__ import CONF_DIR
from harness.data import build_data
from harness.tracking import open_experiment, resolve_uri, start_run

FRACTIONS, SEEDS = (0.0, 0.1, 0.3), tuple(range(10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    client, experiment_id = open_experiment(resolve_uri(args.tracking_uri), "robust_regression")
    for fraction in FRACTIONS:
        for seed in SEEDS:
            with initialize_config_dir(CONF_DIR, version_base="1.3"):
                cfg = compose("config", overrides=["data=outliers", f"data.outlier_fraction={fraction}", f"seed={seed}"])
            data = build_data(cfg.data, seed)
            x, y = data.train.x.numpy(), data.train.y.numpy()
            for variant, model in (("sklearn_ols", LinearRegression()), ("sklearn_huber", HuberRegressor(max_iter=2000))):
                model.fit(x, y)
                err = model.predict(data.test.x.numpy()) - data.test.y.numpy()
                run = start_run(client, experiment_id, f"{variant}-outliers-s{seed}",
                                {"variant": variant, "loss": variant, "data": "outliers", "seed": str(seed), "task": "regression"})
                run.log_params({"data.outlier_fraction": str(fraction), "seed": str(seed)})
                run.log_metrics({
                    "test/rmse": float(np.sqrt(np.mean(err**2))),
                    "test/mae": float(np.mean(np.abs(err))),
                    "test/coef_error": float(np.linalg.norm(model.coef_ - data.info["true_coef"].numpy())),
                }, step=0)
                run.end("FINISHED")
    print("logged", 2 * len(FRACTIONS) * len(SEEDS), "reference runs")


if __name__ == "__main__":
    main()
