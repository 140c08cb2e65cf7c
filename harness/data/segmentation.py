"""Segmentation masks: synthetic shapes generated from the seed (``data=segmentation``) and Oxford-IIIT Pet
trimaps through torchvision (``data=pets``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from .bundle import DataBundle, DataError, Split
from .registry import register_dataset


def _split(x: torch.Tensor, y: torch.Tensor, n_train: int, n_val: int) -> tuple[Split, Split, Split]:
    return (
        Split(x[:n_train], y[:n_train]),
        Split(x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        Split(x[n_train + n_val :], y[n_train + n_val :]),
    )


def _shape_limits(cfg: DictConfig) -> str | None:
    if cfg.num_classes is None or not 2 <= cfg.num_classes <= 4:
        return f"data.num_classes={cfg.num_classes!r} is not allowed: data=segmentation draws 1 to 3 shape types, so data.num_classes must be an integer in [2, 4]"
    return None


@register_dataset("segmentation", task="segmentation", limits=_shape_limits)
def make_shapes(cfg: DictConfig, seed: int) -> DataBundle:
    """Grey images of ``shapes_per_image`` shapes on a textured, noisy background, with their masks.

    Shape types are circle, square and diamond (of equal area), one per foreground class (``num_classes - 1`` of
    them, at most 3); ``num_classes=2`` gives binary masks. Each shape covers about ``fg_fraction /
    shapes_per_image`` of the image (size jittered by +-30%), so ``fg_fraction`` dials pixel imbalance from mild
    (0.3) to severe (0.02). Shapes are brighter than the background by ``contrast * (1 + 0.5 * type)``; the
    background is a smooth random field (``texture``) plus pixel noise (``noise_std``).
    """
    g = torch.Generator().manual_seed(seed)
    n, s, kinds = cfg.n_train + cfg.n_val + cfg.n_test, cfg.image_size, cfg.num_classes - 1
    coarse = torch.randn(n, 1, s // 8 + 2, s // 8 + 2, generator=g)
    image = cfg.texture * F.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
    image = image + cfg.noise_std * torch.randn(n, 1, s, s, generator=g)
    mask = torch.zeros(n, s, s, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    radius0 = s * math.sqrt(cfg.fg_fraction / cfg.shapes_per_image / math.pi)
    for _ in range(cfg.shapes_per_image):
        cx, cy = (torch.rand(n, 1, 1, generator=g) * s for _ in range(2))
        r = radius0 * (0.7 + 0.6 * torch.rand(n, 1, 1, generator=g))
        kind = torch.randint(0, kinds, (n, 1, 1), generator=g)
        dx, dy = (xx - cx).abs(), (yy - cy).abs()
        inside = torch.where(
            kind == 0,
            dx**2 + dy**2 < r**2,
            torch.where(kind == 1, torch.maximum(dx, dy) < r * math.sqrt(math.pi) / 2, dx + dy < r * math.sqrt(math.pi / 2)),
        )
        mask = torch.where(inside, kind + 1, mask)
        image = image + (inside * cfg.contrast * (1.0 + 0.5 * kind)).unsqueeze(1)
    train, val, test = _split(image, mask, cfg.n_train, cfg.n_val)
    return DataBundle(
        "segmentation", "segmentation", train, val, test, (1, s, s), cfg.num_classes,
        source=f"generated from seed {seed} (harness.data.segmentation)",
    )


def _load_pets(root: str | Path, split: str, size: int, limit: int | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resized to ``size`` (RGB, [0, 1]) and binary masks (pet and its border = 1, background = 0)."""
    import numpy as np
    from PIL import Image
    from torchvision.datasets import OxfordIIITPet

    cache = Path(root) / "oxford-iiit-pet" / f"tensors-{split}-{size}-{limit}.pt"
    if cache.is_file():
        return tuple(torch.load(cache))  # type: ignore[return-value]
    try:
        dataset = OxfordIIITPet(str(root), split=split, target_types="segmentation", download=download)
    except Exception as err:  # noqa: BLE001
        raise DataError(
            f"data=pets: Oxford-IIIT Pet not found under {Path(root) / 'oxford-iiit-pet'} and not downloadable "
            f"({type(err).__name__}: {err}). Run once with internet access (data.download=true), or place "
            f"images/*.jpg and annotations/{{trainval,test}}.txt + annotations/trimaps/*.png there."
        ) from None
    count = len(dataset) if limit is None else min(limit, len(dataset))
    images, masks = [], []
    for i in range(count):
        image, trimap = dataset[i]
        images.append(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0)
        masks.append(np.asarray(trimap.resize((size, size), Image.NEAREST)) != 2)  # 1 pet, 2 background, 3 border
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(masks)).long()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save((x, y), cache)
    return x, y


@register_dataset("pets", task="segmentation")
def make_pets(cfg: DictConfig, seed: int) -> DataBundle:
    """Oxford-IIIT Pet (Parkhi et al. 2012) foreground masks; validation taken from ``trainval`` by ``val_fraction``."""
    x, y = _load_pets(cfg.root, "trainval", cfg.image_size, cfg.max_images, cfg.download)
    x_te, y_te = _load_pets(cfg.root, "test", cfg.image_size, cfg.max_images, cfg.download)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(cfg.val_fraction * len(x)))
    x, y = x[perm], y[perm]
    mean, std = x[n_val:].mean((0, 2, 3), keepdim=True), x[n_val:].std((0, 2, 3), keepdim=True) + 1e-6
    return DataBundle(
        "pets",
        "segmentation",
        Split((x[n_val:] - mean) / std, y[n_val:]),
        Split((x[:n_val] - mean) / std, y[:n_val]),
        Split((x_te - mean) / std, y_te),
        (3, cfg.image_size, cfg.image_size),
        2,
        source=f"torchvision.datasets.OxfordIIITPet under {Path(cfg.root) / 'oxford-iiit-pet'}",
    )
