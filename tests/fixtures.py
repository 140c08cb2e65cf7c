"""Small files laid out exactly as the real downloads are, for loaders that must work offline in tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding (LeCun et al.): magic 0x0000 08 <ndim>, big-endian int32 sizes, then unsigned bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 images whose class (0-9) is written as a bright bar at row ``3 + 2 * label``, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, label in enumerate(labels):
        images[i, 3 + 2 * label, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_idx_dataset(folder: Path, n_train: int = 200, n_test: int = 100, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = digits(n_train, 0), digits(n_test, 1)
    files = {
        "train-images-idx3-ubyte": xtr, "train-labels-idx1-ubyte": ytr,
        "t10k-images-idx3-ubyte": xte, "t10k-labels-idx1-ubyte": yte,
    }
    for name, array in files.items():
        data = idx_bytes(array)
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(data)
        else:
            (folder / name).write_bytes(data)


def write_pets(root: Path, n_per_split: int = 6, size: int = 40) -> None:
    """``<root>/oxford-iiit-pet/`` as torchvision downloads it: images/*.jpg, annotations/{trainval,test}.txt and
    annotations/trimaps/*.png (1 pet, 2 background, 3 border). Each image has a bright disc; its trimap marks it."""
    from PIL import Image

    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(0)
    for split in ("trainval", "test"):
        lines = []
        for i in range(n_per_split):
            image_id = f"{'Abyssinian' if i % 2 else 'beagle'}_{split}{i}"
            cy, cx, r = rng.integers(12, size - 12), rng.integers(12, size - 12), 8
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            ring = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 2) ** 2) & ~disc
            rgb = rng.integers(0, 80, size=(size, size, 3)).astype(np.uint8)
            rgb[disc] = [230, 180, 90]
            trimap = np.full((size, size), 2, np.uint8)
            trimap[disc], trimap[ring] = 1, 3
            Image.fromarray(rgb).save(base / "images" / f"{image_id}.jpg")
            Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{image_id}.png")
            lines.append(f"{image_id} {1 + i % 2} {1 + i % 2} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
