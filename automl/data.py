"""Image-folder data: scan, stratified seeded split, decode once into uint8 arrays per input size.

Images are decoded, resized and center-cropped once on the driver (as timm's eval transform
does, with the backbone's interpolation and crop_pct) and shipped to trial workers through
the Ray object store, so no trial pays for JPEG/PNG decoding and every worker sees the same
pixels. Normalization (the backbone's mean/std) happens per batch on the worker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from automl.errors import DataError
from automl.paths import local_path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MIN_PER_CLASS = 2


@dataclass(frozen=True)
class LabelledFiles:
    """Image files with integer labels into `classes` (sorted sub-folder names)."""

    files: list[Path]
    labels: list[int]
    classes: list[str]


@dataclass
class PreparedImages:
    """Decoded train/val images per input size, ready to put in the object store."""

    classes: list[str]
    train_labels: np.ndarray
    val_labels: np.ndarray
    train: dict[str, np.ndarray] = field(default_factory=dict)
    val: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def scan_image_folder(path: str | Path) -> LabelledFiles:
    """List the images of a folder with one sub-folder per class; DataError if unusable."""
    root = local_path(path, "data.path")
    if not root.exists():
        raise DataError(f"data path {str(root)!r} does not exist; pass --data DIR or set data.path")
    if not root.is_dir():
        raise DataError(f"data path {str(root)!r} is not a folder of class sub-folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = sorted(
            f for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS
        )
        files += found
        labels += [index] * len(found)
    if not files:
        raise DataError(
            f"no images found in {str(root)!r}; expected {root}/<class name>/<image>.png|jpg"
        )
    counts = Counter(labels)
    used = [c for i, c in enumerate(classes) if counts[i] > 0]
    if len(used) < 2:
        raise DataError(
            f"{str(root)!r} has images of a single class ({used[0]!r}); classification needs "
            "at least two class sub-folders"
        )
    return LabelledFiles(files, labels, classes)


def stratified_split(
    labels: list[int] | np.ndarray, val_fraction: float, seed: int, max_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/val indices: each class keeps its share in both splits."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        if max_per_class is not None:
            idx = idx[:max_per_class]
        if len(idx) < MIN_PER_CLASS:
            raise DataError(
                f"class {int(cls)} has {len(idx)} usable example(s); every class needs at "
                f"least {MIN_PER_CLASS} (one for training, one for validation)"
            )
        n_val = min(max(1, round(len(idx) * val_fraction)), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
# What PIL raises for a file that is not a (complete) image: a truncated JPEG passes
# `Image.verify()` and only fails with OSError when its pixels are decoded.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
              Image.DecompressionBombError)


def resize_crop(img: Image.Image, size: int, interpolation: str, crop_pct: float) -> np.ndarray:
    """Resize the short side to size/crop_pct and center-crop to size (timm's eval transform)."""
    scale = int(size / crop_pct)
    w, h = img.size
    if w < h:
        new = (scale, max(scale, round(h * scale / w)))
    else:
        new = (max(scale, round(w * scale / h)), scale)
    img = img.resize(new, _RESAMPLE.get(interpolation, Image.Resampling.BILINEAR))
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_image(path: Path | str, size: int, interpolation: str, crop_pct: float) -> np.ndarray:
    """Decode one image to RGB, resize and center-crop it (see `resize_crop`)."""
    with Image.open(path) as source:
        return resize_crop(source.convert("RGB"), size, interpolation, crop_pct)


def prepare_images(
    source: str | Path | LabelledFiles,
    preprocessing: list[dict[str, Any]],
    val_fraction: float,
    seed: int,
    max_per_class: int | None = None,
) -> PreparedImages:
    """Split, then decode each chosen file once into every distinct input size.

    Files that cannot be decoded (corrupt, truncated, not an image) are skipped and counted;
    a class left without a training or a validation image is a DataError.
    """
    found = source if isinstance(source, LabelledFiles) else scan_image_folder(source)
    labels = np.asarray(found.labels)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed, max_per_class)
    variants = {resize_key(pre): pre for pre in preprocessing}
    skipped: list[str] = []
    kept: dict[str, list[int]] = {"train": [], "val": []}
    arrays: dict[str, dict[str, list[np.ndarray]]] = {
        split: {key: [] for key in variants} for split in kept
    }
    for split, index in (("train", train_idx), ("val", val_idx)):
        for i in index:
            try:
                with Image.open(found.files[i]) as image:
                    rgb = image.convert("RGB")
                decoded = {key: resize_crop(rgb, pre["image_size"], pre["interpolation"],
                                            pre["crop_pct"]) for key, pre in variants.items()}
            except UNREADABLE:
                skipped.append(str(found.files[i]))
                continue
            kept[split].append(int(i))
            for key, array in decoded.items():
                arrays[split][key].append(array)
    _check_usable(found, labels, kept, len(skipped))
    out = PreparedImages(found.classes, labels[kept["train"]], labels[kept["val"]],
                         skipped=skipped)
    for key in variants:
        out.train[key] = np.stack(arrays["train"][key])
        out.val[key] = np.stack(arrays["val"][key])
    return out


def _check_usable(
    found: LabelledFiles, labels: np.ndarray, kept: dict[str, list[int]], skipped: int
) -> None:
    for cls, name in enumerate(found.classes):
        counts = {split: int((labels[idx] == cls).sum()) for split, idx in kept.items()}
        if (labels == cls).any() and min(counts.values()) == 0:
            raise DataError(
                f"class {name!r} has {sum(counts.values())} readable image(s) after skipping "
                f"{skipped} unreadable file(s); every class needs at least {MIN_PER_CLASS} (one "
                "for training, one for validation)"
            )


def resize_key(pre: dict[str, Any]) -> str:
    """Backbones that share size, interpolation and crop share one decoded copy."""
    return f"{pre['image_size']}-{pre['interpolation']}-{pre['crop_pct']:g}"


def list_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively) in the named folders."""
    files: list[Path] = []
    for item in inputs:
        path = local_path(item, "input")
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input {item!r} does not exist")
    if not files:
        raise DataError(f"no images found in {inputs}")
    return files


def image_batches(
    inputs: list[str], preprocessing: dict[str, Any], batch_size: int
) -> Iterator[tuple[list[str], Any]]:
    """(names, normalized NCHW tensor) batches for prediction; unreadable files are an error."""
    from automl.tasks import normalize

    files = list_images(inputs)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        arrays = []
        for file in chunk:
            try:
                arrays.append(load_image(file, preprocessing["image_size"],
                                         preprocessing["interpolation"], preprocessing["crop_pct"]))
            except UNREADABLE as exc:
                raise DataError(f"cannot read image {str(file)!r}: {exc}") from None
        pixels = torch.from_numpy(np.stack(arrays))
        yield [str(f) for f in chunk], normalize(pixels, preprocessing)
