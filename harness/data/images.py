"""MNIST and Fashion-MNIST through torchvision's loaders (``data=mnist``, ``data=fashion_mnist``).

Where the files come from, in order: ``data.root`` in torchvision's layout (``<root>/MNIST/raw/``); known local
copies (``../shared/datasets/MNIST/raw`` beside this repository; Debian's ``dataset-fashion-mnist`` in
``/usr/share/datasets/fashion-mnist``), copied into ``data.root``; torchvision's download (``data.download``).
The decoded uint8 tensors are cached as ``<root>/<Name>/tensors.pt``, so later runs load in milliseconds. The
whole set is held as normalised float tensors; nothing is decoded image by image during training.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig

from losses.noisy_labels import uniform_noise_matrix

from .bundle import DataBundle, DataError, Split
from .registry import register_dataset

REPO = Path(__file__).resolve().parents[2]
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
LOCAL_COPIES: dict[str, list[Path]] = {
    "mnist": [REPO.parent / "shared" / "datasets" / "MNIST" / "raw"],
    "fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")],
}
HOW_TO_GET = {
    "mnist": "run once with internet access (data.download=true fetches it), or copy the four IDX files there",
    "fashion_mnist": "run once with internet access (data.download=true), or on Debian/Ubuntu "
    "`apt-get install dataset-fashion-mnist` (installs /usr/share/datasets/fashion-mnist), or copy the IDX files there",
}
STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
OFFICIAL_SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000)}  # train, test images
COPIED_FROM = "copied-from.txt"  # beside raw/: which local copy filled it


def _torchvision_class(name: str):
    from torchvision import datasets

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]


def _copy_local(name: str, raw: Path) -> bool:
    """Fill ``raw`` from a known local copy (plain or .gz IDX files); True if all four files are then there."""
    for source in LOCAL_COPIES[name]:
        found = {f: next((p for p in (source / f, source / f"{f}.gz") if p.is_file()), None) for f in IDX_FILES}
        if not all(found.values()):
            continue
        raw.mkdir(parents=True, exist_ok=True)
        for f, path in found.items():
            if path.suffix == ".gz":
                with gzip.open(path, "rb") as src, open(raw / f, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copyfile(path, raw / f)
        (raw.parent / COPIED_FROM).write_text(str(source.resolve()))
        return True
    return False


def load_uint8(name: str, root: str | Path, download: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` as uint8 images ``(N, 28, 28)`` and int64 labels."""
    cls = _torchvision_class(name)
    folder = Path(root) / cls.__name__
    cache = folder / "tensors.pt"
    if cache.is_file():
        return tuple(torch.load(cache))  # type: ignore[return-value]
    raw = folder / "raw"
    if not all((raw / f).is_file() for f in IDX_FILES):
        _copy_local(name, raw)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError...
        looked = [str(raw)] + [str(p) for p in LOCAL_COPIES[name]]
        raise DataError(
            f"data={name}: dataset files not found and not downloadable ({type(err).__name__}: {err}). Needed: "
            f"{', '.join(IDX_FILES)} (plain or .gz); looked in: {', '.join(looked)}. To get them: {HOW_TO_GET[name]}; "
            f"or point data.root at a folder holding {cls.__name__}/raw/."
        ) from None
    tensors = (train.data, train.targets, test.data, test.targets)
    torch.save(tensors, cache)
    return tensors


def _long_tail(y: torch.Tensor, ratio: float, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """Indices keeping ``n_max * ratio**(-c / (C - 1))`` examples of class ``c`` (Cui et al. 2019's exponential profile)."""
    counts = torch.bincount(y, minlength=num_classes)
    n_max = int(counts.max())
    keep = []
    for c in range(num_classes):
        idx = torch.nonzero(y == c).squeeze(1)
        n = min(len(idx), max(1, round(n_max * ratio ** (-c / (num_classes - 1)))))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(keep).sort().values


def _flip_labels(y: torch.Tensor, fraction: float, num_classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip exactly ``round(fraction * N)`` labels, each to a different class drawn uniformly; returns (labels, mask).
    The noise matrix of this flip is :func:`losses.noisy_labels.uniform_noise_matrix` (in the bundle's ``info``)."""
    n = round(fraction * len(y))
    idx = torch.randperm(len(y), generator=g)[:n]
    y = y.clone()
    y[idx] = (y[idx] + torch.randint(1, num_classes, (n,), generator=g)) % num_classes
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[idx] = True
    return y, mask


@register_dataset("mnist", task="multiclass")
@register_dataset("fashion_mnist", task="multiclass")
def make_image_classification(cfg: DictConfig, seed: int) -> DataBundle:
    """MNIST-family data: optional subsample (``train_size``), long tail (``imbalance_ratio``), a stratified
    validation split (``val_fraction``), then ``label_noise`` on the training labels only; test set untouched."""
    x_tr, y_tr, x_te, y_te = load_uint8(cfg.name, cfg.root, cfg.download)
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    files = provenance(cfg.name, cfg.root, len(y_tr), len(y_te))
    g = torch.Generator().manual_seed(seed)
    y_tr = y_tr.long()
    if cfg.imbalance_ratio > 1:
        keep = _long_tail(y_tr, cfg.imbalance_ratio, num_classes, g)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    perm = torch.randperm(len(y_tr), generator=g)
    if cfg.train_size and cfg.train_size < len(perm):
        perm = perm[: int(cfg.train_size / (1 - cfg.val_fraction))]
    n_val = round(cfg.val_fraction * len(perm))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    mean, std = STATS[cfg.name]

    def norm(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() / 255.0 - mean) / std).unsqueeze(1)

    y_train, noisy = y_tr[train_idx], torch.zeros(len(train_idx), dtype=torch.bool)
    if cfg.label_noise > 0:
        y_train, noisy = _flip_labels(y_train, cfg.label_noise, num_classes, g)
    return DataBundle(
        name=cfg.name,
        task="multiclass",
        train=Split(norm(x_tr[train_idx]), y_train),
        val=Split(norm(x_tr[val_idx]), y_tr[val_idx]),
        test=Split(norm(x_te), y_te.long()),
        input_shape=(1, 28, 28),
        num_classes=num_classes,
        info={"noisy_label_mask": noisy, **({"noise_matrix": uniform_noise_matrix(cfg.label_noise, num_classes)} if cfg.label_noise > 0 else {})},
        **files,
    )


def provenance(name: str, root: str | Path, n_train: int, n_test: int) -> dict[str, str | None]:
    """``source`` (the folder read, and the local copy it was filled from) and ``substitute`` (set when the
    files hold fewer images than the official dataset, e.g. the 10,000-digit MNIST subset)."""
    folder = Path(root) / _torchvision_class(name).__name__
    copied = folder / COPIED_FROM
    source = f"{folder}" + (f" (copied from {copied.read_text().strip()})" if copied.is_file() else "")
    official = OFFICIAL_SIZES[name]
    substitute = None
    if (n_train, n_test) != official:
        substitute = (
            f"{n_train:,} training / {n_test:,} test images stand in for the official {official[0]:,} / {official[1]:,} "
            f"(from {source})"
        )
    return {"source": source, "substitute": substitute}
