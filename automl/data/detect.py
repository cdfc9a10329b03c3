"""What task a data source holds, for `automl search --data PATH` without a search space.

An image folder (class sub-folders) or a manifest table (a column of image paths) → image
classification; a table with one text-like and one label-like column → text classification.
Each verdict comes with the reason, so the CLI can say why and how to override it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd
import pyarrow.fs as pafs

from automl import paths, storage
from automl.data import sources
from automl.errors import DataError
from automl.tasks.image_files import is_image

SAMPLE_ROWS = 2_000
"""Rows of a table read to judge its columns (the head of the file)."""
MAX_LISTED_FILES = 20_000
"""Files of a folder looked at to find class sub-folders."""
LABEL_NAMES = ("label", "labels", "class", "category", "target", "y", "sentiment", "tag")
TEXT_NAMES = ("text", "sentence", "review", "content", "body", "comment", "document",
              "message", "question", "tweet", "title")
OVERRIDE_HINT = "override with --task image|text, --text-column NAME, --label-column NAME"


@dataclass(frozen=True)
class Detection:
    """The task of a data source and the columns to read (tables)."""

    task: str
    path: str
    reason: str
    text_column: str | None = None
    label_column: str | None = None
    path_column: str | None = None

    def data_section(self) -> dict[str, str]:
        """The `data:` keys of a search space that read this source."""
        keys = {"path": self.path, "text_column": self.text_column,
                "label_column": self.label_column, "path_column": self.path_column}
        return {k: v for k, v in keys.items() if v is not None}


def detect(path: str, task: str | None = None, text_column: str | None = None,
           label_column: str | None = None) -> Detection:
    """Detect the task of the folder or table at `path` (local or URI); DataError if it is
    missing, of no known kind, or ambiguous (the message lists the candidates)."""
    location = paths.resolve(path, "--data")
    info = sources.file_info(location)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"--data {path!r} does not exist; pass an image folder (one "
                        "sub-folder per class) or a table of texts and labels")
    if info.type == pafs.FileType.Directory:
        if task == "text" or text_column or label_column:
            raise DataError(f"--data {path!r} is a folder: an image folder takes its labels "
                            "from the class sub-folder names, and text classification reads "
                            f"a table ({', '.join(sources.TABLE_SUFFIXES)}), not a folder")
        return _folder(location)
    if not sources.is_table(location):
        raise DataError(f"--data {path!r} is neither a folder of class sub-folders nor a "
                        f"table ({', '.join(sources.TABLE_SUFFIXES)})")
    return _table(location, task, text_column, label_column)


def _folder(location: str) -> Detection:
    base = storage.filesystem(location)[1].rstrip("/") + "/"
    per_class: Counter[str] = Counter()
    loose = tables = 0
    for found in sources.walk_files(location)[:MAX_LISTED_FILES]:
        parts = found.path[len(base):].split("/")
        if parts[0].startswith("."):
            continue
        if is_image(found.path):
            if len(parts) > 1:
                per_class[parts[0]] += 1
            else:
                loose += 1
        tables += sources.is_table(found.path)
    if len(per_class) >= 2:
        shown = ", ".join(f"{c} ({n})" for c, n in sorted(per_class.items())[:5])
        more = f", … {len(per_class) - 5} more" if len(per_class) > 5 else ""
        return Detection("image", location, f"image classification: a folder of "
                         f"{sum(per_class.values())} images in {len(per_class)} class "
                         f"sub-folders: {shown}{more}")
    if per_class:
        raise DataError(f"{location}: all images are in one sub-folder "
                        f"({next(iter(per_class))!r}); classification needs a sub-folder per "
                        "class, at least two")
    if loose:
        raise DataError(f"{location}: {loose} images but no class sub-folders; put each "
                        "class's images in <folder>/<class name>/, or pass a manifest table "
                        "with path and label columns")
    what = f"{tables} table file(s): pass one with --data FILE" if tables else "no images"
    raise DataError(f"{location}: {what}; expected <folder>/<class name>/<image>")


def _table(location: str, task: str | None, text_column: str | None,
           label_column: str | None) -> Detection:
    sample = sources.head(location, SAMPLE_ROWS)
    columns = [str(c) for c in sample.columns]
    for flag, name in (("--text-column", text_column), ("--label-column", label_column)):
        if name is not None and name not in columns:
            raise DataError(f"{location} has no column {name!r} ({flag}); it has {columns}")
    if sample.empty:
        raise DataError(f"{location} has no rows")
    image_paths = [c for c in columns if _is_path_column(sample[c])]
    if task == "image" or (task is None and image_paths and not text_column):
        if not image_paths:
            raise DataError(f"{location}: --task image needs a column of image paths; "
                            f"columns: {columns}")
        path_column = _pick("image path", image_paths, ("path", "image", "file"), location)
        label = label_column or _pick(
            "label", _label_like(sample, exclude={path_column}), LABEL_NAMES, location)
        return Detection("image", location, f"image classification: a manifest table with "
                         f"image paths in {path_column!r} and labels in {label!r} "
                         f"({_classes(sample[label])})", path_column=path_column,
                         label_column=label)
    text = text_column or _pick("text", _text_like(sample), TEXT_NAMES, location)
    label = label_column or _pick("label", _label_like(sample, exclude={text}), LABEL_NAMES,
                                  location)
    words = sample[text].dropna().astype(str).str.split().str.len().mean()
    return Detection("text", location, f"text classification: a table with text in {text!r} "
                     f"(≈{words:.0f} words each) and labels in {label!r} "
                     f"({_classes(sample[label])})", text_column=text, label_column=label)


def _classes(values: pd.Series) -> str:
    n = values.nunique(dropna=True)
    return f"{n} classes in the first {len(values)} rows"


def _strings(values: pd.Series) -> pd.Series:
    present = values.dropna()
    if not len(present) or not all(isinstance(v, str) for v in present.iloc[:50]):
        return pd.Series([], dtype=str)
    return present.astype(str)


def _is_path_column(values: pd.Series) -> bool:
    texts = _strings(values)
    return bool(len(texts)) and texts.map(is_image).mean() >= 0.9


def _text_like(sample: pd.DataFrame) -> list[str]:
    """String columns of mostly distinct, several-word values."""
    found = []
    for column in sample.columns:
        texts = _strings(sample[column])
        if len(texts) and not _is_path_column(texts):
            words = texts.str.split().str.len().mean()
            if words >= 3 and texts.nunique() >= 0.5 * len(texts):
                found.append(str(column))
    return found


def _label_like(sample: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Columns of few distinct values, each repeated: strings, integers or booleans."""
    found = []
    rows = len(sample)
    for column in sample.columns:
        values = sample[column].dropna()
        if str(column) in exclude or len(values) < 2:
            continue
        if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
            continue  # measurements, not classes
        distinct = values.nunique()
        if 2 <= distinct <= max(2, min(1_000, rows // 2)) and distinct < len(values):
            found.append(str(column))
    return found


def _pick(kind: str, candidates: list[str], names: tuple[str, ...], location: str) -> str:
    """The one candidate column, or the one with a conventional name among several."""
    if len(candidates) == 1:
        return candidates[0]
    named = [c for c in candidates if c.lower() in names]
    if len(named) == 1:
        return named[0]
    flag = "--label-column" if kind == "label" else "--text-column"
    if kind == "image path":
        flag = "a manifest's path column (data.path_column)"
    if not candidates:
        raise DataError(f"{location}: found no {kind} column; {OVERRIDE_HINT}")
    raise DataError(f"{location}: ambiguous {kind} column, candidates: "
                    f"{', '.join(repr(c) for c in candidates)}; choose one with {flag}")
