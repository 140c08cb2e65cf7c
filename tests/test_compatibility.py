"""Every registered loss against every dataset: it trains (finite loss, task metrics) or is refused before
training with a message naming the loss, the task and the losses that fit."""

from __future__ import annotations

import math

import pytest
import torch

import losses
from fixtures import write_idx_dataset, write_pets
from harness import tasks
from harness.config import ConfigError, num_classes_of, validate, validate_data
from harness.criterion import build_criterion
from harness.data import build_data
from harness.models import build_model
from harness.train import fit

TINY = {
    "outliers": ["data.n_train=64", "data.n_val=16", "data.n_test=16"],
    "imbalanced": ["data.n_samples=400", "data.positive_fraction=0.1"],
    "breast_cancer": [],
    "mnist": ["data.download=false"],
    "fashion_mnist": ["data.download=false"],
    "segmentation": ["data.n_train=16", "data.n_val=4", "data.n_test=4", "data.image_size=16"],
    "segmentation-3": ["data.n_train=16", "data.n_val=4", "data.n_test=4", "data.image_size=16", "data.num_classes=3"],
    "pets": ["data.download=false", "data.image_size=16"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_idx_dataset(root / "MNIST" / "raw")
    write_idx_dataset(root / "FashionMNIST" / "raw")
    write_pets(root)
    return root


@pytest.mark.parametrize("data", list(TINY))
@pytest.mark.parametrize("loss", tasks.trainable_losses())
def test_pair_trains_or_is_refused(make_cfg, files, data, loss):
    name = data.split("-")[0]
    extra = [f"data.root={files}"] if name in ("mnist", "fashion_mnist", "pets") else []
    if "noise_matrix" in losses.spec(loss).params and name in ("mnist", "fashion_mnist"):
        extra.append("data.label_noise=0.2")  # forward correction uses the noise the harness injects
    cfg = make_cfg(f"data={name}", f"loss={loss}", "trainer.epochs=1", "trainer.batch_size=32", *TINY[data], *extra)
    task = tasks.of_config(cfg).name
    reason = tasks.get(task).incompatibility(losses.spec(loss), num_classes_of(cfg))
    if reason:
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        message = str(err.value)
        assert f"loss={loss}" in message and f"'{task}'" in message and "losses that fit" in message
        return
    validate(cfg)
    torch.manual_seed(0)
    bundle = build_data(cfg.data, cfg.seed)
    if losses.spec(loss).target_min is not None and float(bundle.train.y.min()) < losses.spec(loss).target_min:
        with pytest.raises(ConfigError, match=rf"loss={loss} needs targets >= 0 .*losses that fit"):
            validate_data(cfg, bundle)
        return
    counts = bundle.class_counts() if bundle.num_classes else None
    criterion = build_criterion(cfg, task, bundle.num_classes, counts, bundle.info.get("noise_matrix"))
    model = build_model(cfg.model, bundle, criterion.num_outputs)
    (epoch,) = fit(model, criterion, bundle, cfg)
    assert math.isfinite(epoch["train/loss"])
    assert f"val/{tasks.get(task).monitor}" in epoch


def test_every_trainable_loss_fits_some_dataset():
    for loss in tasks.trainable_losses():
        assert any(loss in losses.available(t) for t in ("regression", "binary", "multiclass", "segmentation"))
