"""What a scan of the data found, as plain values: classes, each usable example's label and
split, and a fingerprint of the content (for the preparation cache). No pixels, no texts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.errors import DataError

if TYPE_CHECKING:
    from automl.data.duplicates import Duplicates

MIN_PER_CLASS = 2
TRAIN, VAL, TEST, UNUSED = 0, 1, 2, -1
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}
SEARCH_SPLITS = ("train", "val")
"""The splits trials, ranking and feature caches read; `test` is read only to score the
selected model after the search."""
AUTO_TEST_MIN_DATA = 3_000
AUTO_TEST_FRACTION = 0.1
AUTO_TEST_MIN_ROWS = 300


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
    """int8 per example: TRAIN, VAL, TEST or UNUSED (beyond max_per_class)."""
    locations: tuple[str, ...]
    fingerprint: str
    """Hash of the content (files, sizes, mtimes, labels, split settings)."""
    dropped: int = 0
    """Rows dropped while scanning (empty text or label)."""
    notes: tuple[str, ...] = ()
    """What the scan decided that a user should read (e.g. why there is no test split)."""
    duplicates: Duplicates | None = None
    """Exact duplicates across (and within) the splits (`automl.data.duplicates`)."""

    def count(self, which: int) -> int:
        """Examples in one split."""
        return int((self.split == which).sum())

    def class_counts(self, which: int = TRAIN) -> np.ndarray:
        """Examples of each class in one split (int64, one entry per class)."""
        return np.bincount(self.labels[self.split == which], minlength=len(self.classes))


IMBALANCE_RATIO = 3.0
"""Largest / smallest class of the training split above which the search says so."""


def balanced_weights(counts: np.ndarray) -> tuple[float, ...]:
    """scikit-learn's `balanced` class weights, n / (K · n_class): every class's examples
    together weigh as much as an average class's."""
    counts = np.asarray(counts, dtype=np.float64)
    return tuple(float(w) for w in counts.sum() / (len(counts) * np.maximum(counts, 1)))


def imbalance_note(counts: np.ndarray, classes: tuple[str, ...], metric: str,
                   class_weights: str) -> str | None:
    """A line for the start of a search on strongly imbalanced classes (None otherwise)."""
    counts = np.asarray(counts)
    if len(counts) < 2 or counts.min() * IMBALANCE_RATIO > counts.max():
        return None
    big, small = int(counts.argmax()), int(counts.argmin())
    ratio = counts[big] / max(int(counts[small]), 1)
    line = (f"classes are imbalanced: {classes[big]!r} has {counts[big]} training examples, "
            f"{classes[small]!r} {counts[small]} ({ratio:.0f}×)")
    advice = [a for a, needed in (("search.metric: balanced_accuracy", metric == "accuracy"),
                                  ("train.class_weights: balanced", class_weights == "none"))
              if needed]
    if advice:
        line += ("; accuracy mostly measures the large classes — consider "
                 + " and ".join(advice))
    return line


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


def holdout_fraction(rows: int, fraction: float | None) -> tuple[float, str | None]:
    """The test fraction to hold out of `rows` examples, and a note when the default holds
    none: `data.test_fraction` when set, else 0.1 (at least 300 examples) from 3,000 up."""
    if fraction is not None:
        return fraction, None
    if rows >= AUTO_TEST_MIN_DATA:
        return max(AUTO_TEST_FRACTION, AUTO_TEST_MIN_ROWS / rows), None
    return 0.0, (f"no test split: {rows} examples (< {AUTO_TEST_MIN_DATA}); the selected "
                 "model's validation score is optimistic — set data.test_fraction or "
                 "data.test_path to hold one out")


def split_with_test(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                    max_per_class: int | None = None) -> np.ndarray:
    """The split column: first `test_fraction` of each class (of its `max_per_class` when
    set) held out as TEST, seeded apart from the validation split, then the rest split
    train/val as `stratified_split` does."""
    labels = np.asarray(labels)
    split = np.full(len(labels), UNUSED, dtype=np.int8)
    rest = np.arange(len(labels))
    if test_fraction > 0:
        rng = np.random.default_rng([seed, 1])  # its own stream: val stays val without test
        held = []
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            used = min(len(idx), max_per_class or len(idx))
            held.append(idx[:max(0, min(round(used * test_fraction), len(idx) - MIN_PER_CLASS))])
        test = np.concatenate(held) if held else np.array([], int)
        split[test] = TEST
        rest = np.flatnonzero(split != TEST)
    train, val = stratified_split(labels[rest], val_fraction, seed, max_per_class)
    split[rest[train]] = TRAIN
    split[rest[val]] = VAL
    return split


def train_with_test(labels: np.ndarray, test_fraction: float, seed: int,
                    max_per_class: int | None = None) -> np.ndarray:
    """The split column of a source whose validation split comes from elsewhere
    (`data.val_path`): all TRAIN but its test share (and, with `max_per_class`, a seeded
    subsample of that many per class)."""
    if not (test_fraction or max_per_class):
        return np.full(len(labels), TRAIN, np.int8)
    split = split_with_test(labels, 0.5, test_fraction, seed,
                            max_per_class * 2 if max_per_class else None)
    split[split == VAL] = UNUSED if max_per_class else TRAIN
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
