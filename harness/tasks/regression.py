"""Regression: one output per example against float targets; RMSE and MAE, plus the weight and intercept errors
of a linear model when the data knows the true ones (``data=outliers``). Losses that take a mean and a variance
(``input='mean_variance'``: ``gaussian_nll``, ``beta_nll``) get two outputs per example; the metrics then read the
mean, and add the test NLL and the coverage of the predicted 68% / 95% intervals."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from losses.regression import mean_and_variance

from ..evaluation import Evaluation, to_host
from .base import Figures, Task, register

NOMINAL = {"coverage_68": 0.6827, "coverage_95": 0.9545}  # P(|Z| < 1), P(|Z| < 2) for a normal Z


def split_output(output: Tensor) -> tuple[Tensor, Tensor | None]:
    """The predicted mean, and the predicted variance when the output holds one (``(N, 2)``), else ``None``."""
    if output.ndim == 2 and output.shape[1] == 2:
        return mean_and_variance(output)
    return output, None


class Regression(Task):
    name = "regression"
    metrics = {"rmse": True, "mae": True, "coef_error": True, "bias_error": True, "nll": True, "interval_error": True}
    monitor = "rmse"
    target_format = "float"
    target_formats = ("float",)
    classification = False

    def num_outputs(self, spec: Any, num_classes: int | None) -> int:
        return 2 if spec.input == "mean_variance" else 1

    def gradient_groups(self, data: Any) -> dict[str, Tensor]:
        """Outlying and clean training targets, where the data knows which are which (``info['outlier_mask']``)."""
        if "outlier_mask" not in data.info:
            return {}
        mask = data.info["outlier_mask"].bool()
        return {"outliers": mask, "clean": ~mask}

    def prepare(self, output: Tensor, labels: Tensor, num_outputs: int, target_format: str) -> tuple[Tensor, Tensor]:
        return (output if num_outputs == 2 else output.squeeze(-1)), labels

    def compute(self, output: Tensor, target: Tensor, num_classes: int | None) -> dict[str, float]:
        """RMSE and MAE of the (mean) prediction; with a predicted variance also the Gaussian NLL (with its
        ``0.5 log 2 pi``), the share of targets inside the predicted 68% and 95% intervals (mean +- 1 and 2 sd) and
        ``interval_error``, the mean absolute gap between those shares and 0.6827, 0.9545."""
        self.check_host("metrics", output, target)
        mean, var = split_output(output.double())
        err = mean - target.double()
        result = {"rmse": err.square().mean().sqrt().item(), "mae": err.abs().mean().item()}
        if var is not None:
            z = err.abs() / var.sqrt()
            result["nll"] = (0.5 * (torch.log(2 * torch.pi * var) + err.square() / var)).mean().item()
            result["coverage_68"] = (z < 1).double().mean().item()
            result["coverage_95"] = (z < 2).double().mean().item()
            result["interval_error"] = sum(abs(result[k] - v) for k, v in NOMINAL.items()) / len(NOMINAL)
        return result

    def score(self, evaluation: Evaluation, data: Any) -> dict[str, float]:
        """RMSE and MAE in the target's own units: targets standardised for training (``data.info['target_scale']``,
        e.g. ``data=table data.standardize_target=true``) are scaled back."""
        result = self.compute(evaluation.output, evaluation.target, None)
        scale = data.info.get("target_scale", 1.0)
        if scale == 1.0:
            return result
        in_units = {k: v * scale for k, v in result.items() if k in ("rmse", "mae")}
        if "nll" in result:
            in_units["nll"] = result["nll"] + float(torch.log(torch.tensor(scale)))  # a density in target units
        return {**result, **in_units}

    def test_metrics(self, evaluation: Evaluation, data: Any, model: Any) -> dict[str, float]:
        """RMSE and MAE; with known true weights (``data.info['true_coef']``) and a single linear layer, also the
        L2 error of its weights (``coef_error``) and the absolute error of its intercept (``bias_error``)."""
        result = self.score(evaluation, data)
        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if "true_coef" in data.info and len(linear) == 1:
            weight = to_host(linear[0].weight)[0].double()  # row 0: the mean's (row 1 is the variance's, if any)
            result["coef_error"] = (weight - data.info["true_coef"].double()).norm().item()
            result["bias_error"] = abs(to_host(linear[0].bias)[0].item() - data.info["true_bias"])
        return result

    def figures(self, test: Evaluation, data: Any, evaluate: Callable[[str], Evaluation], title: str) -> Figures:
        from .. import plots

        train = evaluate("train")
        mask = data.info.get("outlier_mask", torch.zeros(len(train.target), dtype=torch.bool))
        test_mean, train_mean = split_output(test.output)[0], split_output(train.output)[0]
        return {"plots/regression_fit.png": plots.regression_fit(test.target, test_mean, train.target, train_mean, mask, title)}


TASK = register(Regression())
