"""Where data lives: a local path or a pyarrow-filesystem URI (`s3://`, `gs://`, ...), listed,
opened and read as tables in bounded batches, so no process has to hold a whole table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from automl.errors import DataError
from automl.storage import filesystem

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".json")
BATCH_ROWS = 50_000
"""Rows per batch when a table is streamed: bounds the memory of whoever reads it."""


def file_info(location: str) -> pafs.FileInfo:
    """Type, size and mtime of one location (FileType.NotFound if absent)."""
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def walk_files(folder: str) -> list[pafs.FileInfo]:
    """Every file below a folder (recursive), with size and mtime, sorted by path."""
    fs, path = filesystem(folder)
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return sorted((f for f in found if f.type == pafs.FileType.File), key=lambda f: f.path)


def open_input(location: str) -> IO[bytes]:
    """A readable binary file for a local path or URI."""
    fs, path = filesystem(location)
    return fs.open_input_file(path)


def table_format(location: str) -> str:
    """csv / tsv / parquet / jsonl / json from the name (a .gz/.bz2 suffix may follow)."""
    name = PurePosixPath(location).name.lower()
    for compressed in (".gz", ".bz2", ".zst"):
        name = name.removesuffix(compressed)
    suffix = PurePosixPath(name).suffix
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{location!r}: unknown table format {suffix!r}; use one of "
                        f"{', '.join(TABLE_SUFFIXES)}")
    return {".pq": "parquet"}.get(suffix, suffix[1:])


def is_table(location: str) -> bool:
    """True if the name looks like a table this module reads."""
    try:
        table_format(location)
    except DataError:
        return False
    return True


def iter_table(location: str, columns: list[str], batch_rows: int | None = None
               ) -> Iterator[pd.DataFrame]:
    """Stream the named columns of a table in batches of at most `batch_rows` rows
    (default BATCH_ROWS).

    A missing column is a DataError that lists the columns the table has.
    """
    info = file_info(location)
    if info.type != pafs.FileType.File:
        raise DataError(f"data file {location!r} does not exist; pass --data FILE or set "
                        "data.path")
    kind = table_format(location)
    try:
        yield from _batches(location, kind, columns, batch_rows or BATCH_ROWS)
    except UnicodeDecodeError as exc:
        raise DataError(f"{location} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "re-encode it, e.g. iconv -f latin1 -t utf-8 in.csv > fixed.csv") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {location} as a {kind} table: {exc}") from None


def head(location: str, rows: int) -> pd.DataFrame:
    """The first `rows` rows of a table, every column (to look at its columns)."""
    kind = table_format(location)
    try:
        with open_input(location) as raw:
            if kind == "parquet":
                import pyarrow.parquet as pq

                batches = pq.ParquetFile(raw).iter_batches(batch_size=rows)
                return next(batches).to_pandas()
            if kind in ("csv", "tsv"):
                return pd.read_csv(raw, sep="\t" if kind == "tsv" else ",", encoding="utf-8",
                                   nrows=rows, compression=_compression(location))
            frame = pd.read_json(raw, lines=kind == "jsonl", compression=_compression(location),
                                 nrows=rows if kind == "jsonl" else None)
            return frame.head(rows)
    except StopIteration:
        return pd.DataFrame()
    except UnicodeDecodeError as exc:
        raise DataError(f"{location} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "re-encode it, e.g. iconv -f latin1 -t utf-8 in.csv > fixed.csv") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {location} as a {kind} table: {exc}") from None


def _batches(location: str, kind: str, columns: list[str], batch_rows: int
             ) -> Iterator[pd.DataFrame]:
    compression = _compression(location)
    with open_input(location) as raw:
        reader: Any
        if kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(raw)
            _check_columns(location, columns, parquet.schema_arrow.names)
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                yield batch.to_pandas()
            return
        if kind in ("csv", "tsv"):
            reader = pd.read_csv(raw, sep="\t" if kind == "tsv" else ",", encoding="utf-8",
                                 chunksize=batch_rows, compression=compression)
        else:
            reader = pd.read_json(raw, lines=kind == "jsonl", compression=compression,
                                  chunksize=batch_rows if kind == "jsonl" else None)
        for frame in [reader] if isinstance(reader, pd.DataFrame) else reader:
            _check_columns(location, columns, list(frame.columns))
            yield frame[columns]


def _compression(location: str) -> str | None:
    suffix = PurePosixPath(location).suffix.lower()
    return {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}.get(suffix)


def _check_columns(location: str, wanted: list[str], have: list[str]) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise DataError(f"{location} has no column(s) {missing}; it has {list(have)}. Set "
                        "data.label_column / data.text_column / data.path_column")


class LabelReader:
    """Turns label columns into strings, batch after batch, and refuses a column that mixes
    numbers and strings (`3` and `"cat"`: almost always a broken export, not two classes)."""

    def __init__(self, location: str, column: str) -> None:
        self.location, self.column = location, column
        self.kinds: dict[str, Any] = {}

    def strings(self, values: pd.Series) -> pd.Series:
        """The labels as strings (integral floats lose their `.0`); NaN stays missing."""
        present = values.dropna()
        for value in present.iloc[np.unique(present.map(_kind), return_index=True)[1]]:
            self.kinds.setdefault(_kind(value), value)
        if len(self.kinds) > 1:
            examples = " and ".join(repr(v) for v in self.kinds.values())
            raise DataError(f"{self.location}: column {self.column!r} mixes label types "
                            f"({examples}); make every label the same type (e.g. all strings)")
        return values.map(_label_string, na_action="ignore")


def _kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    return "string"


def _label_string(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
