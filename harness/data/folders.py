"""Your own images from folders: class folders for classification (``data=image_folder``) and image/mask folder
pairs for segmentation (``data=mask_folder``).

    python -m harness data=image_folder data.root=path/to/pets      # root/<class>/<image>.png|jpg|...
    python -m harness data=mask_folder data.images=imgs data.masks=masks

``image_folder`` reads the folder with torchvision's ``ImageFolder`` (class = subfolder name, sorted, hidden
folders and files skipped). ``mask_folder`` pairs each image with the mask of the same file stem (``a.jpg`` <->
``a.png``); a mask is a single-channel image (8-bit grey, palette or 16-bit) holding the class index of each
pixel. Images are converted to ``data.channels`` (1: grey, 3: RGB), resized to ``data.image_size`` squared
(bilinear; masks nearest, non-square pictures are stretched, not cropped), and normalised per channel with the
training split's mean and std. Everything is decoded once into in-memory tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig

from ..user_code import one_line
from .bundle import DataBundle, DataError, Split
from .registry import register_dataset
from .table import required, resolve_path, show_list, split_indices

MASK_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L")


def _why(err: Exception) -> str:
    """A short reason for an unreadable file."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image PIL can decode"
    return f"{type(err).__name__}: {one_line(err)[:200]}"


def _image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS)


def _is_image(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(_image_extensions())


def _channels(cfg: DictConfig) -> int:
    channels = cfg.get("channels", 3)
    if channels not in (1, 3):
        raise DataError(f"data.channels={channels!r} is not allowed: 1 (grey) or 3 (RGB)")
    return int(channels)


def _folder(cfg: DictConfig, key: str, example: str) -> Path:
    path = resolve_path(required(cfg, key, example))
    if not path.exists():
        raise DataError(f"data.{key}: folder not found: {path}")
    if not path.is_dir():
        raise DataError(f"data.{key}: {path} is not a folder")
    return path


def _to_tensor(size: int, channels: int) -> Callable[[Any], torch.Tensor]:
    """PIL image -> float tensor ``(channels, size, size)`` in [0, 1]."""
    from torchvision import transforms

    mode = "L" if channels == 1 else "RGB"
    return transforms.Compose([
        transforms.Lambda(lambda im: im.convert(mode)),
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.ToTensor(),
    ])


def _bundle(name: str, task: str, x: torch.Tensor, y: torch.Tensor, parts: list, num_classes: int,
            info: dict[str, Any], source: str) -> DataBundle:
    """Train/val/test bundle of images ``x`` (standardised per channel with the mean and std of the training rows,
    recorded in ``info``) and labels ``y``, split by the index arrays ``parts``."""
    train_idx, val_idx, test_idx = (torch.from_numpy(p) for p in parts)
    train = x[train_idx]
    mean, std = train.mean((0, 2, 3), keepdim=True), train.std((0, 2, 3), keepdim=True) + 1e-6
    x = (x - mean) / std
    return DataBundle(
        name=name,
        task=task,
        train=Split(x[train_idx], y[train_idx]),
        val=Split(x[val_idx], y[val_idx]),
        test=Split(x[test_idx], y[test_idx]),
        input_shape=tuple(x.shape[1:]),
        num_classes=num_classes,
        info={**info, "mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
        source=source,
    )


def _class_folders(root: Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = [e.name for e in os.scandir(root) if e.is_file() and _is_image(e.name)]
        hint = f"; the {len(loose)} images directly in it need a folder per class" if loose else ""
        raise DataError(f"data.root: no class folders in {root} (expected root/<class>/<image>){hint}")
    return classes


def _count_images(folder: Path) -> int:
    """Images under ``folder`` as ImageFolder finds them (recursively, following links)."""
    return sum(_is_image(f) for _, _, files in os.walk(folder, followlinks=True) for f in files)


@register_dataset("image_folder", task="multiclass")
def make_image_folder(cfg: DictConfig, seed: int) -> DataBundle:
    """Classification images in torchvision ``ImageFolder`` layout (``root/<class>/<image>``): classes read from
    the folder names, a stratified train/val/test split by ``val_fraction``/``test_fraction``. Two classes are
    still a multiclass task (two outputs, softmax)."""
    from torchvision.datasets import ImageFolder

    root = _folder(cfg, "root", "data.root=path/to/folder holding one folder of images per class")
    channels, size = _channels(cfg), int(cfg.image_size)
    classes = _class_folders(root)
    counts = {c: _count_images(root / c) for c in classes}
    if not any(counts.values()):
        raise DataError(f"data.root: no images in the class folders of {root} (supported: {', '.join(_image_extensions())})")
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DataError(
            f"data.root: class folder(s) {show_list(empty, 5)} in {root} hold no images (supported: "
            f"{', '.join(_image_extensions())}); add images or remove the folder"
        )
    if len(classes) < 2:
        raise DataError(f"data.root: only one class folder ({classes[0]!r}) in {root}; classification needs 2 or more")
    rare = min(counts, key=counts.get)  # type: ignore[arg-type]
    if counts[rare] < 3:
        raise DataError(
            f"data.root: class {rare!r} has only {counts[rare]} image(s); a stratified train/val/test split needs at "
            f"least 3 per class"
        )

    class Folder(ImageFolder):
        def find_classes(self, directory: Any) -> tuple[list[str], dict[str, int]]:
            return classes, {c: i for i, c in enumerate(classes)}  # hidden folders (.ipynb_checkpoints...) skipped

    dataset = Folder(str(root), transform=_to_tensor(size, channels), is_valid_file=_is_image)
    images = []
    for i, (path, _) in enumerate(dataset.samples):
        try:
            images.append(dataset[i][0])
        except Exception as err:  # noqa: BLE001 - PIL's UnidentifiedImageError, truncated files, ...
            raise DataError(f"data.root: cannot read image {path} ({_why(err)})") from None
    x = torch.stack(images)
    y = torch.tensor(dataset.targets, dtype=torch.long)
    parts = split_indices(len(y), cfg.val_fraction, cfg.test_fraction, seed, labels=y.numpy())
    return _bundle("image_folder", "multiclass", x, y, parts, len(classes), {"classes": classes},
                   f"torchvision.datasets.ImageFolder at {root}")


def _by_stem(folder: Path, key: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and _is_image(f.name):
            if f.stem in files:
                raise DataError(f"data.{key}: two files share the stem {f.stem!r} in {folder}: {files[f.stem].name}, {f.name}")
            files[f.stem] = f
    if not files:
        raise DataError(f"data.{key}: no images in {folder} (supported: {', '.join(_image_extensions())})")
    return files


def _read_mask(path: Path, size: int, image_size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as opened:
            mask = opened.copy()
    except Exception as err:  # noqa: BLE001
        raise DataError(f"data.masks: cannot read mask {path} ({_why(err)})") from None
    if mask.mode not in MASK_MODES:
        raise DataError(
            f"data.masks: mask {path} is {mask.mode}; masks must be single-channel images holding the class index of "
            f"each pixel (8-bit grey, palette or 16-bit)"
        )
    if mask.size != image_size:
        raise DataError(
            f"data.masks: mask {path} is {mask.size[0]}x{mask.size[1]} but its image is {image_size[0]}x{image_size[1]}"
        )
    if mask.mode == "1":
        mask = mask.convert("L")
    resized = TF.resize(mask, [size, size], interpolation=InterpolationMode.NEAREST)
    return torch.from_numpy(np.asarray(resized).astype(np.int64))


@register_dataset("mask_folder", task="segmentation")
def make_mask_folder(cfg: DictConfig, seed: int) -> DataBundle:
    """Segmentation from an image folder and a mask folder paired by file stem; classes read from the masks
    (``max + 1``) unless ``data.num_classes`` says; a random train/val/test split by the fractions."""
    from torchvision.datasets.folder import default_loader

    image_dir = _folder(cfg, "images", "data.images=path/to/images")
    mask_dir = _folder(cfg, "masks", "data.masks=path/to/masks (one mask per image, same file stem)")
    channels, size = _channels(cfg), int(cfg.image_size)
    images, masks = _by_stem(image_dir, "images"), _by_stem(mask_dir, "masks")
    unmatched = [p.name for stem, p in images.items() if stem not in masks]
    if unmatched:
        raise DataError(
            f"data.masks: no mask for {len(unmatched)} of {len(images)} images ({', '.join(unmatched[:3])}"
            f"{', ...' if len(unmatched) > 3 else ''}) in {mask_dir}; masks pair with images by file stem (a.jpg <-> a.png)"
        )
    if len(images) < 3:
        raise DataError(f"data.images: {len(images)} image(s) in {image_dir}; train, val and test need at least one each")
    to_tensor = _to_tensor(size, channels)
    xs, ys = [], []
    for stem, path in images.items():
        try:
            image = default_loader(str(path))
        except Exception as err:  # noqa: BLE001
            raise DataError(f"data.images: cannot read image {path} ({_why(err)})") from None
        xs.append(to_tensor(image))
        ys.append(_read_mask(masks[stem], size, image.size))
    x, y = torch.stack(xs), torch.stack(ys)

    highest = int(y.max())
    declared = cfg.get("num_classes")
    if declared is None:
        values = torch.unique(y).tolist()
        if values == [0, 255]:
            raise DataError(
                f"data.masks: the masks in {mask_dir} hold 0 and 255: save class indices (0 background, 1 foreground) "
                f"rather than black/white, or set data.num_classes"
            )
        if highest < 1:
            raise DataError(f"data.masks: every mask in {mask_dir} is all 0 (one class); segmentation needs 2 or more")
        num_classes = highest + 1
    else:
        num_classes = int(declared)
        if highest >= num_classes:
            worst = next(s for s, m in zip(images, ys) if int(m.max()) == highest)
            raise DataError(
                f"data.num_classes={num_classes} but mask {masks[worst].name} holds class {highest}; mask values must be "
                f"0..{num_classes - 1} (or leave data.num_classes=null to read it from the masks)"
            )
    parts = split_indices(len(x), cfg.val_fraction, cfg.test_fraction, seed)
    info = {"stems": list(images), "unpaired_masks": len(set(masks) - set(images))}
    return _bundle("mask_folder", "segmentation", x, y, parts, num_classes, info, f"images {image_dir}, masks {mask_dir}")
