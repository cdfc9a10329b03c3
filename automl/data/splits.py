"""Which split each example of a data source belongs to: validation from `data.val_path` or
held out of `data.path`, the test split from `data.test_path` or held out first
(`data.test_fraction`), and group splits (`data.group_column`), in which every row of a group
— several photos of one object, several reviews of one film, one patient's scans — lands in
the same split, so validation and test never hold a near-copy of a training example.

Groups are split like examples are (stratified, seeded, test first), each group counted under
its most frequent class; the rows follow their group, so a split's share of rows is close
to, not exactly, its fraction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from automl.config.schema import DataConfig
from automl.data.catalog import TEST, VAL, holdout_fraction, split_with_test, train_with_test
from automl.errors import DataError


def split_sources(labels: Sequence[np.ndarray], data: DataConfig,
                  groups: Sequence[object] | None = None) -> tuple[np.ndarray, str | None]:
    """The split column of every example, in source order: `labels[0]` of `data.path`, then
    those of `data.val_path` and of `data.test_path` when set; and a note when no test split
    is held out. `groups`: each `data.path` row's group (with `data.group_column`)."""
    assert data.path is not None
    fraction, note = (0.0, None) if data.test_path else holdout_fraction(
        len(labels[0]), data.test_fraction)

    def split_rows(y: np.ndarray, max_per_class: int | None) -> np.ndarray:
        if data.val_path:
            return train_with_test(y, fraction, data.seed, max_per_class)
        return split_with_test(y, data.val_fraction, fraction, data.seed, max_per_class)

    if groups is None:
        main = split_rows(labels[0], data.max_per_class)
    else:
        main = split_by_group(labels[0], groups, lambda y: split_rows(y, None), data.path)
    parts = [main]
    if data.val_path:
        parts.append(np.full(len(labels[1]), VAL, np.int8))
    if data.test_path:
        parts.append(np.full(len(labels[-1]), TEST, np.int8))
    return np.concatenate(parts), note


def split_by_group(labels: np.ndarray, groups: Sequence[object],
                   split_groups: Callable[[np.ndarray], np.ndarray], where: str) -> np.ndarray:
    """The split column of `labels` (int class per row) with whole groups per split:
    `split_groups` splits the groups' majority classes."""
    values = pd.Series(list(groups), dtype=object)
    if values.isna().any():
        raise DataError(f"{where}: {int(values.isna().sum())} row(s) have no value in "
                        "data.group_column; every row needs its group")
    codes, uniques = pd.factorize(values.astype(str), sort=True)
    labels = np.asarray(labels)
    counts = np.zeros((len(uniques), int(labels.max(initial=0)) + 1), dtype=np.int64)
    np.add.at(counts, (codes, labels), 1)
    try:
        group_split = split_groups(counts.argmax(1))  # ties: the lower class, deterministic
    except DataError as exc:
        raise DataError(f"{where}: with data.group_column every class needs at least 2 groups "
                        f"({exc}, counted in groups)") from None
    return group_split[codes]
