"""Imbalanced binary classification on tabular features (``data=imbalanced``, ``data=breast_cancer``)."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from .bundle import DataBundle, DataError, Split
from .registry import register_dataset


def _stratified_splits(x: np.ndarray, y: np.ndarray, cfg: DictConfig, seed: int, name: str, source: str) -> DataBundle:
    """Stratified train/val/test split (``val_fraction``, ``test_fraction``), features standardised with training
    statistics."""
    from sklearn.model_selection import train_test_split

    rest = cfg.val_fraction + cfg.test_fraction
    try:
        x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=rest, stratify=y, random_state=seed)
        x_va, x_te, y_va, y_te = train_test_split(
            x_rest, y_rest, test_size=cfg.test_fraction / rest, stratify=y_rest, random_state=seed
        )
    except ValueError as err:
        raise DataError(
            f"data={name}: too few positives ({int(y.sum())}) for stratified splits; raise data.n_samples or "
            f"data.positive_fraction ({err})"
        ) from None
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8

    def split(a: np.ndarray, b: np.ndarray) -> Split:
        return Split(torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b, dtype=torch.long))

    return DataBundle(
        name=name,
        task="binary",
        train=split(x_tr, y_tr),
        val=split(x_va, y_va),
        test=split(x_te, y_te),
        input_shape=(x.shape[1],),
        num_classes=2,
        source=source,
    )


@register_dataset("imbalanced", task="binary")
def make_imbalanced(cfg: DictConfig, seed: int) -> DataBundle:
    """scikit-learn ``make_classification`` with a ``positive_fraction`` of class 1, split stratified."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=cfg.n_samples,
        n_features=cfg.n_features,
        n_informative=cfg.n_informative,
        n_redundant=cfg.n_redundant,
        weights=[1.0 - cfg.positive_fraction, cfg.positive_fraction],
        class_sep=cfg.class_sep,
        flip_y=cfg.flip_y,
        random_state=seed,
    )
    return _stratified_splits(x, y, cfg, seed, "imbalanced", f"sklearn.datasets.make_classification(random_state={seed})")


@register_dataset("breast_cancer", task="binary")
def make_breast_cancer(cfg: DictConfig, seed: int) -> DataBundle:
    """scikit-learn's bundled Wisconsin breast cancer data, malignant = positive (1), with the malignant cases
    subsampled so that they make up ``positive_fraction`` of the data (all 357 benign cases kept)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    y = (data.target == 0).astype(np.int64)  # sklearn codes malignant as 0
    rng = np.random.default_rng(seed)
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    k = min(len(pos), round(cfg.positive_fraction * len(neg) / (1.0 - cfg.positive_fraction)))
    keep = np.sort(np.concatenate([neg, rng.choice(pos, size=k, replace=False)]))
    return _stratified_splits(data.data[keep], y[keep], cfg, seed, "breast_cancer", "sklearn.datasets.load_breast_cancer (bundled with scikit-learn)")
