"""Classification and segmentation datasets through their real loaders (scikit-learn, torchvision)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fixtures import write_idx_dataset, write_pets
from harness.data import DataError, build_data
from harness.data import images as image_data


def test_imbalanced_positive_fraction_and_stratified_splits(make_cfg):
    cfg = make_cfg("data=imbalanced", "data.positive_fraction=0.01", "data.n_samples=10000")
    data = build_data(cfg.data, seed=0)
    assert data.task == "binary" and data.num_classes == 2 and data.input_shape == (20,)
    assert (len(data.train), len(data.val), len(data.test)) == (6000, 2000, 2000)
    for split in (data.train, data.val, data.test):
        assert split.y.float().mean().item() == pytest.approx(0.01, abs=0.002)
    assert abs(data.train.x.mean().item()) < 0.05 and data.train.x.std().item() == pytest.approx(1.0, abs=0.05)


def test_imbalanced_too_few_positives_is_a_clear_error(make_cfg):
    cfg = make_cfg("data=imbalanced", "data.positive_fraction=0.001", "data.n_samples=1000")
    with pytest.raises(DataError, match="too few positives"):
        build_data(cfg.data, seed=0)


def test_breast_cancer_subsampled_positives(make_cfg):
    data = build_data(make_cfg("data=breast_cancer", "data.positive_fraction=0.1").data, seed=0)
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert int((y == 0).sum()) == 357  # every benign case is kept
    assert int(y.sum()) == round(0.1 * 357 / 0.9)


@pytest.fixture
def idx_root(tmp_path) -> Path:
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    return tmp_path


def test_mnist_through_torchvision_loader_and_cache(make_cfg, idx_root):
    cfg = make_cfg("data=mnist", f"data.root={idx_root}", "data.download=false")
    data = build_data(cfg.data, seed=0)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.train) + len(data.val) == 200 and len(data.test) == 100
    assert data.train.x.dtype == torch.float32 and data.train.x.shape[1:] == (1, 28, 28)
    assert (idx_root / "MNIST" / "tensors.pt").is_file()
    for f in (idx_root / "MNIST" / "raw").iterdir():
        f.unlink()  # the cache alone now serves the data
    again = build_data(cfg.data, seed=0)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)


def test_fashion_mnist_from_a_local_gz_copy(make_cfg, tmp_path, monkeypatch):
    copy = tmp_path / "debian"
    write_idx_dataset(copy, gz=True)
    monkeypatch.setitem(image_data.LOCAL_COPIES, "fashion_mnist", [copy])
    root = tmp_path / "root"
    data = build_data(make_cfg("data=fashion_mnist", f"data.root={root}", "data.download=false").data, seed=0)
    assert len(data.test) == 100
    assert (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_offline_without_files_says_which_files_where_and_how(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setitem(image_data.LOCAL_COPIES, "fashion_mnist", [tmp_path / "nowhere"])
    cfg = make_cfg("data=fashion_mnist", f"data.root={tmp_path / 'root'}", "data.download=true")
    with pytest.raises(DataError) as err:
        build_data(cfg.data, seed=0)
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "root" / "FashionMNIST" / "raw") in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.root" in message


def test_subsample_long_tail_and_label_noise(make_cfg, idx_root):
    base = ["data=mnist", f"data.root={idx_root}", "data.download=false"]
    small = build_data(make_cfg(*base, "data.train_size=90").data, seed=0)
    assert len(small.train) == 90
    tail = build_data(make_cfg(*base, "data.imbalance_ratio=10", "data.val_fraction=0.01").data, seed=0)
    counts = torch.bincount(torch.cat([tail.train.y, tail.val.y]), minlength=10)
    assert counts[0] == 20 and counts[9] == 2  # 20 * 10**(-c/9)
    assert all(counts[c] >= counts[c + 1] for c in range(9))
    clean = build_data(make_cfg(*base).data, seed=3)
    noisy = build_data(make_cfg(*base, "data.label_noise=0.3").data, seed=3)
    flipped = noisy.info["noisy_label_mask"]
    assert int(flipped.sum()) == round(0.3 * len(noisy.train))
    assert torch.all(noisy.train.y[flipped] != clean.train.y[flipped])
    assert torch.equal(noisy.train.y[~flipped], clean.train.y[~flipped])
    assert torch.equal(noisy.val.y, clean.val.y) and torch.equal(noisy.test.y, clean.test.y)


@pytest.mark.parametrize("fg", [0.05, 0.3])
def test_synthetic_shapes_foreground_fraction_and_determinism(make_cfg, fg):
    cfg = make_cfg("data=segmentation", f"data.fg_fraction={fg}", "data.n_train=64", "data.n_val=8", "data.n_test=8")
    data = build_data(cfg.data, seed=0)
    assert data.task == "segmentation" and data.input_shape == (1, 32, 32)
    share = (data.train.y > 0).float().mean().item()
    assert share == pytest.approx(fg, rel=0.35)
    again = build_data(cfg.data, seed=0)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.train.y, data.train.y)
    # shapes are brighter than the background
    assert data.train.x[:, 0][data.train.y > 0].mean() > data.train.x[:, 0][data.train.y == 0].mean() + 0.5


def test_multiclass_shapes_have_every_class(make_cfg):
    data = build_data(make_cfg("data=segmentation", "data.num_classes=4", "data.n_train=64").data, seed=0)
    assert set(data.train.y.unique().tolist()) == {0, 1, 2, 3}


def test_pets_through_torchvision_on_a_fixture_laid_out_as_the_download(make_cfg, tmp_path):
    write_pets(tmp_path)
    cfg = make_cfg("data=pets", f"data.root={tmp_path}", "data.download=false", "data.image_size=32")
    data = build_data(cfg.data, seed=0)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 2
    assert len(data.train) + len(data.val) == 6 and len(data.test) == 6
    fg = data.test.y.float().mean().item()
    assert 0.1 < fg < 0.4  # disc plus border ring on a 40x40 image, resized
    assert set(data.test.y.unique().tolist()) == {0, 1}


def test_pets_missing_is_a_clear_error(make_cfg, tmp_path):
    cfg = make_cfg("data=pets", f"data.root={tmp_path}", "data.download=false")
    with pytest.raises(DataError, match=r"oxford-iiit-pet.*trimaps"):
        build_data(cfg.data, seed=0)
