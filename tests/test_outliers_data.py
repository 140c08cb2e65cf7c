"""The outliers generator: exact outlier count, clean val/test splits, determinism from the seed."""

from __future__ import annotations

import pytest
import torch

from harness.data import build_data


def residuals(split, data):
    return split.y - (split.x @ data.info["true_coef"] + data.info["true_bias"])


def test_sizes_and_exact_outlier_count(make_cfg):
    cfg = make_cfg("data.n_train=400", "data.n_val=100", "data.n_test=300", "data.n_features=5", "data.outlier_fraction=0.25")
    data = build_data(cfg.data, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (400, 100, 300)
    assert data.train.x.shape == (400, 5) and data.input_shape == (5,)
    assert int(data.info["outlier_mask"].sum()) == 100
    assert data.task == "regression"


def test_outliers_only_in_train_and_only_where_marked(make_cfg):
    cfg = make_cfg()  # defaults: 10% one-sided outliers of scale 25, noise_std 1
    data = build_data(cfg.data, seed=0)
    mask = data.info["outlier_mask"]
    train_r = residuals(data.train, data)
    assert int(mask.sum()) == round(0.1 * cfg.data.n_train)
    # marked points carry offsets of at least 0.5 * 25 (minus noise); unmarked ones are plain Gaussian noise
    assert train_r[mask].min() > 12.5 - 5
    assert train_r[~mask].abs().max() < 5
    for split in (data.val, data.test):
        r = residuals(split, data)
        assert r.abs().max() < 5
        assert r.std().item() == pytest.approx(1.0, abs=0.1)


def test_symmetric_mode_has_both_signs(make_cfg):
    data = build_data(make_cfg("data.outlier_mode=symmetric").data, seed=0)
    r = residuals(data.train, data)[data.info["outlier_mask"]]
    assert (r > 10).sum() > 20 and (r < -10).sum() > 20


def test_leverage_points(make_cfg):
    cfg = make_cfg("data.leverage_fraction=0.5", "data.leverage_scale=10")
    data = build_data(cfg.data, seed=0)
    norms = data.train.x.norm(dim=1)
    far = norms > 15  # N(0, 10^2) in 10-d has norm ~ 31; N(0, 1) has norm ~ 3
    assert int(far.sum()) == 50
    assert bool(data.info["outlier_mask"][far].all())


def test_no_outliers_when_fraction_zero(make_cfg):
    data = build_data(make_cfg("data.outlier_fraction=0").data, seed=0)
    assert int(data.info["outlier_mask"].sum()) == 0
    assert residuals(data.train, data).abs().max() < 5


def test_same_seed_same_data_other_seed_other_data(make_cfg):
    cfg = make_cfg()
    a, b, c = build_data(cfg.data, 7), build_data(cfg.data, 7), build_data(cfg.data, 8)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)
    assert torch.equal(a.info["outlier_mask"], b.info["outlier_mask"])
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.info["true_coef"], c.info["true_coef"])
