"""What a scan of the data found, as plain values: classes, each usable example's label and
split, and a fingerprint of the content (for the preparation cache). No pixels, no texts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.errors import DataError

MIN_PER_CLASS = 2
TRAIN, VAL, UNUSED = 0, 1, -1
SPLIT_NAMES = {TRAIN: "train", VAL: "val"}


@dataclass(frozen=True)
class Catalog:
    """The examples of one data source, in a fixed order.

    `locations` are what the task needs to find row i again: for images one file per row,
    for tables the table files whose usable rows, in order, are the catalog's rows.
    """

    source: str
    classes: tuple[str, ...]
    labels: np.ndarray
    """int32 class index per example."""
    split: np.ndarray
    """int8 per example: TRAIN, VAL or UNUSED (beyond max_per_class)."""
    locations: tuple[str, ...]
    fingerprint: str
    """Hash of the content (files, sizes, mtimes, labels, split settings)."""
    dropped: int = 0
    """Rows dropped while scanning (empty text or label)."""

    def count(self, which: int) -> int:
        """Examples in one split."""
        return int((self.split == which).sum())


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


def split_array(n: int, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """The per-example split column for train / val index arrays (others UNUSED)."""
    split = np.full(n, UNUSED, dtype=np.int8)
    split[train] = TRAIN
    split[val] = VAL
    return split


def class_codes(names: np.ndarray | list[str], classes: list[str], where: str) -> np.ndarray:
    """Label strings → int32 indices into `classes`; an unknown label is a DataError."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(n) for n in names} - set(index))
    if unknown:
        raise DataError(f"{where}: label value(s) {unknown[:5]} never occur in the training "
                        f"data (known: {classes[:10]})")
    return np.array([index[str(n)] for n in names], dtype=np.int32)


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (plus NumPy arrays)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
