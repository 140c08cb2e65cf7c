"""Linear regression with gross outliers in the training targets (``data=outliers``)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from .bundle import DataBundle, Split
from .registry import register_dataset


@register_dataset("outliers", task="regression")
def make_outliers(cfg: DictConfig, seed: int) -> DataBundle:
    """``y = X w + bias + e`` with ``X, w ~ N(0, 1)`` and ``e ~ N(0, noise_std^2)``.

    Exactly ``round(outlier_fraction * n_train)`` training targets get an offset of ``U(0.5, 1.5) *
    outlier_scale * noise_std`` (positive if ``outlier_mode=one_sided``, random sign if ``symmetric``); a
    ``leverage_fraction`` share of those also get their ``x`` replaced by ``N(0, leverage_scale^2)`` (bad leverage
    points). Validation and test sets are clean. One generator seeded by ``seed`` draws everything.
    """
    g = torch.Generator().manual_seed(seed)
    n_train, n_val, n_test, d = cfg.n_train, cfg.n_val, cfg.n_test, cfg.n_features
    n = n_train + n_val + n_test

    coef = torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g)
    y = x @ coef + cfg.bias + cfg.noise_std * torch.randn(n, generator=g)

    x_train, y_train = x[:n_train].clone(), y[:n_train].clone()
    k = round(cfg.outlier_fraction * n_train)
    idx = torch.randperm(n_train, generator=g)[:k]
    offset = (0.5 + torch.rand(k, generator=g)) * cfg.outlier_scale * cfg.noise_std
    if cfg.outlier_mode == "symmetric":
        offset = offset * (torch.randint(0, 2, (k,), generator=g) * 2 - 1)
    y_train[idx] += offset
    n_leverage = round(cfg.leverage_fraction * k)
    x_train[idx[:n_leverage]] = cfg.leverage_scale * torch.randn(n_leverage, d, generator=g)

    outlier_mask = torch.zeros(n_train, dtype=torch.bool)
    outlier_mask[idx] = True
    return DataBundle(
        name="outliers",
        task="regression",
        train=Split(x_train, y_train),
        val=Split(x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        test=Split(x[n_train + n_val :], y[n_train + n_val :]),
        input_shape=(d,),
        info={"true_coef": coef, "true_bias": float(cfg.bias), "outlier_mask": outlier_mask},
        source=f"generated from seed {seed} (harness.data.outliers)",
    )
