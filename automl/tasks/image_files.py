"""Image sources on the driver (a folder of class sub-folders, or a manifest table of paths and
labels) and the decode step that preparation runs on the cluster.

Decoding follows timm's eval transform: resize the short side to size / crop_pct with the
backbone's interpolation, then center-crop; normalization happens per batch on the worker.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from PIL import Image, UnidentifiedImageError

from automl import paths, storage
from automl.data import sources
from automl.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
# What PIL raises for a file that is not a (complete) image: a truncated JPEG passes
# `Image.verify()` and only fails with OSError when its pixels are decoded.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
              Image.DecompressionBombError)


def is_image(name: str) -> bool:
    """True for a file name with an image extension."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def scan_folder(root: str) -> tuple[list[str], list[str], list[str], list[tuple[int, float]]]:
    """(locations, label names, class names, (size, mtime) per file) of a folder with one
    sub-folder per class; DataError if it is not one."""
    info = sources.file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"data path {root!r} does not exist; pass --data DIR or set data.path")
    if info.type != pafs.FileType.Directory:
        raise DataError(f"data path {root!r} is not a folder of class sub-folders (or a "
                        f"manifest table: {', '.join(sources.TABLE_SUFFIXES)})")
    base = storage.filesystem(root)[1].rstrip("/") + "/"
    locations, names, stats = [], [], []
    for found in sources.walk_files(root):
        parts = found.path[len(base):].split("/")
        if len(parts) < 2 or parts[0].startswith(".") or not is_image(found.path):
            continue
        locations.append(storage.to_location(found.path, root))
        names.append(parts[0])
        stats.append((int(found.size or 0), float(found.mtime_ns or 0)))
    if not locations:
        raise DataError(f"no images found in {root!r}; expected "
                        f"{root}/<class name>/<image>.png|jpg")
    classes = sorted(set(names))
    _check_classes(root, classes)
    return locations, names, classes, stats


@dataclass(frozen=True)
class Manifest:
    """The usable rows of a manifest table."""

    locations: list[str]
    names: list[str]
    """Label strings."""
    dropped: int
    """Rows without a path or a label."""
    stats: list[tuple[int, int]]
    """(size, mtime ns) of each image; (-1, 0) when missing."""
    groups: list[str | None] | None = None
    """`data.group_column` of each row, when asked for."""


def read_manifest(location: str, path_column: str, label_column: str,
                  group_column: str | None = None) -> Manifest:
    """The image locations, labels, sizes (and groups) of a manifest table. Relative paths
    are relative to the manifest's folder; rows without a path or label are dropped. The
    sizes and mtimes (-1, 0 when missing) go into the cache key, so an image replaced under
    the same name is prepared again; a row naming a FIFO, a folder or a device is an error
    (one stat per image serves both)."""
    folder = location.rsplit("/", 1)[0]
    reader = sources.LabelReader(location, label_column)
    locations: list[str] = []
    names: list[str] = []
    groups: list[str | None] = []
    stats: list[tuple[int, int]] = []
    dropped = 0
    columns = [path_column, label_column, *([group_column] if group_column else [])]
    for frame in sources.iter_table(location, columns):
        labels = reader.strings(frame[label_column])
        keep = frame[path_column].notna() & labels.notna()
        dropped += int((~keep).sum())
        if group_column:
            groups += [None if pd.isna(g) else str(g) for g in frame[group_column][keep]]
        for item, label in zip(frame[path_column][keep], labels[keep], strict=True):
            item = str(item)
            absolute = paths.is_uri(item) or item.startswith("/")
            locations.append(item if absolute else storage.join(folder, item))
            names.append(str(label))
            found, problem = _local_stat(locations[-1])
            if problem:
                raise DataError(f"{location}: row {len(locations) + dropped}: {problem}; "
                                "a manifest names image files")
            stats.append(found)
    if not locations:
        raise DataError(f"{location}: no rows with both a {path_column!r} and a "
                        f"{label_column!r} value")
    _check_classes(location, sorted(set(names)))
    _fill_remote_stats(locations, stats)
    return Manifest(locations, names, dropped, stats, groups if group_column else None)


def _fill_remote_stats(locations: list[str], out: list[tuple[int, int]]) -> None:
    """(size, mtime in ns) of the remote locations into `out`, one call per bucket."""
    remote: dict[str, list[int]] = {}
    for i, location in enumerate(locations):
        if paths.is_remote(location):
            remote.setdefault(location.split("/", 3)[2], []).append(i)
    for rows in remote.values():
        fs, _ = storage.filesystem(locations[rows[0]])  # one filesystem per bucket
        keys = [locations[i].split("://", 1)[1].split("?", 1)[0] for i in rows]
        for i, info in zip(rows, fs.get_file_info(keys), strict=True):
            if info.type == pafs.FileType.File:
                out[i] = (int(info.size or 0), int(info.mtime_ns or 0))


def _check_classes(where: str, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(f"{where!r} has images of a single class ({classes[0]!r}); "
                        "classification needs at least two classes")


MAX_ASPECT = 3.0
"""Frames are cut to at most this long side / short side before resizing: the eval crop is
square and a random-resized crop (aspect 3/4 .. 4/3) never needs more, and a 1 × 20000
strip does not become a gigapixel image."""


def eval_frame(img: Image.Image, size: int, interpolation: str, crop_pct: float
               ) -> Image.Image:
    """The whole frame (cut to `MAX_ASPECT`) with its short side resized to size/crop_pct:
    what prepared data stores, and what the eval transform center-crops."""
    img = cut_aspect(img)
    target = eval_frame_size(*img.size, size, crop_pct)
    if img.size == target:
        return img
    return img.resize(target, _RESAMPLE.get(interpolation, Image.Resampling.BILINEAR))


def eval_frame_size(width: int, height: int, size: int, crop_pct: float) -> tuple[int, int]:
    """The (width, height) the eval transform resizes a width × height image to."""
    scale = int(size / crop_pct)
    if width < height:
        return scale, max(scale, round(height * scale / width))
    return max(scale, round(width * scale / height)), scale


def resize_crop(img: Image.Image, size: int, interpolation: str, crop_pct: float) -> np.ndarray:
    """Resize the short side to size/crop_pct and center-crop to size (timm's eval transform)
    as uint8 HWC."""
    frame = eval_frame(img, size, interpolation, crop_pct)
    left, top = (frame.size[0] - size) // 2, (frame.size[1] - size) // 2
    return np.array(frame.crop((left, top, left + size, top + size)), dtype=np.uint8)


def cut_aspect(image: Image.Image) -> Image.Image:
    """The central part of an extreme strip, at most `MAX_ASPECT` long per short side."""
    width, height = image.size
    limit = int(MAX_ASPECT * min(width, height))
    if max(width, height) <= limit:
        return image
    if width > height:
        left = (width - limit) // 2
        return image.crop((left, 0, left + limit, height))
    top = (height - limit) // 2
    return image.crop((0, top, width, top + limit))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with 16-bit (and 32-bit integer) grayscale scaled to 8 bits: Pillow's own
    conversion clips every value above 255, which turns a 16-bit image white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        wide = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    return img.convert("RGB")


def regular_file_problem(location: str) -> str | None:
    """Why a local path cannot be read as an image file (a FIFO would block the reader
    forever, a device never ends), or None."""
    return _local_stat(location)[1]


def _local_stat(location: str) -> tuple[tuple[int, int], str | None]:
    """A local file's (size, mtime ns) and why it is no image file (None: a regular file,
    or missing, which preparation skips and counts as unreadable). Remote: (-1, 0), None."""
    if paths.is_remote(location):
        return (-1, 0), None
    try:
        found = os.stat(location)
    except OSError:
        return (-1, 0), None
    if stat.S_ISREG(found.st_mode):
        return (found.st_size, found.st_mtime_ns), None
    mode = found.st_mode
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
    return (-1, 0), f"{location} is {kind}, not an image file"


def read_image_file(location: str | Path) -> bytes:
    """The bytes of one image file (local path or URI); a FIFO, folder or device raises one
    of UNREADABLE (skipped and counted like a bad image)."""
    problem = regular_file_problem(str(location))
    if problem:
        raise ValueError(problem)
    with sources.open_input(str(location)) as raw:
        return bytes(raw.read())


def load_image(location: str | Path, size: int, interpolation: str, crop_pct: float
               ) -> np.ndarray:
    """Decode one image (local path or URI) to RGB, resize and center-crop it."""
    data = read_image_file(location)
    with Image.open(io.BytesIO(data)) as source:
        return resize_crop(to_rgb(source), size, interpolation, crop_pct)


def list_images(inputs: list[str]) -> list[str]:
    """Image files named directly or found (recursively) in the named folders."""
    files: list[str] = []
    for item in inputs:
        where = paths.resolve(item, "input")
        info = sources.file_info(where)
        if info.type == pafs.FileType.Directory:
            files += [storage.to_location(f.path, where) for f in sources.walk_files(where)
                      if is_image(f.path)]
        elif info.type == pafs.FileType.File:
            files.append(where)
        else:
            raise DataError(f"input {item!r} does not exist")
    if not files:
        raise DataError(f"no images found in {inputs}")
    return files
