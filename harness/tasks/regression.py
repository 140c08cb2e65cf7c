"""Regression: one output per example against float targets; RMSE and MAE, plus the weight and intercept errors
of a linear model when the data knows the true ones (``data=outliers``)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..evaluation import Evaluation, to_host
from .base import Figures, Task, register


class Regression(Task):
    name = "regression"
    metrics = {"rmse": True, "mae": True, "coef_error": True, "bias_error": True}
    monitor = "rmse"
    target_format = "float"
    target_formats = ("float",)
    classification = False

    def prepare(self, output: Tensor, labels: Tensor, num_outputs: int, target_format: str) -> tuple[Tensor, Tensor]:
        return output.squeeze(-1), labels

    def compute(self, output: Tensor, target: Tensor, num_classes: int | None) -> dict[str, float]:
        """RMSE and MAE."""
        self.check_host("metrics", output, target)
        err = output.double() - target.double()
        return {"rmse": err.square().mean().sqrt().item(), "mae": err.abs().mean().item()}

    def score(self, evaluation: Evaluation, data: Any) -> dict[str, float]:
        """RMSE and MAE in the target's own units: targets standardised for training (``data.info['target_scale']``,
        e.g. ``data=table data.standardize_target=true``) are scaled back."""
        result = self.compute(evaluation.output, evaluation.target, None)
        scale = data.info.get("target_scale", 1.0)
        return {k: v * scale for k, v in result.items()} if scale != 1.0 else result

    def test_metrics(self, evaluation: Evaluation, data: Any, model: Any) -> dict[str, float]:
        """RMSE and MAE; with known true weights (``data.info['true_coef']``) and a single linear layer, also the
        L2 error of its weights (``coef_error``) and the absolute error of its intercept (``bias_error``)."""
        result = self.score(evaluation, data)
        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if "true_coef" in data.info and len(linear) == 1:
            weight = to_host(linear[0].weight).reshape(-1).double()
            result["coef_error"] = (weight - data.info["true_coef"].double()).norm().item()
            result["bias_error"] = abs(to_host(linear[0].bias).item() - data.info["true_bias"])
        return result

    def figures(self, test: Evaluation, data: Any, evaluate: Callable[[str], Evaluation], title: str) -> Figures:
        from .. import plots

        train = evaluate("train")
        mask = data.info.get("outlier_mask", torch.zeros(len(train.target), dtype=torch.bool))
        return {"plots/regression_fit.png": plots.regression_fit(test.target, test.output, train.target, train.output, mask, title)}


TASK = register(Regression())
