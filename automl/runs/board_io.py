"""The leaderboard on disk and on screen: CSV/Parquet in the run, and the `automl leaderboard`
formats (table, csv, parquet, markdown, json)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from automl.errors import AutomlError
from automl.ownership import write_atomic
from automl.runs.layout import LEADERBOARD_CSV, LEADERBOARD_PARQUET
from automl.runs.leaderboard import COLUMNS
from automl.runs.selection import objective_column

FORMATS = ("table", "csv", "parquet", "markdown", "json")
SHOWN = ["rank", "trial_id", "status", "backbone", "pretrained", "unfreeze_depth", "head_lr",
         "backbone_lr", "val_accuracy", "epochs", "transfer_gain", "overfit_gap",
         "trial_time_s", "latency_ms"]
"""Columns of the terminal table and the markdown view (csv/parquet/json hold all); the
search's metric joins `val_accuracy` when it is another one."""


def shown_columns(board: pd.DataFrame) -> list[str]:
    """`SHOWN`, with the column the board is ranked by right after `val_accuracy`."""
    objective = objective_column(board)
    if objective == "val_accuracy":
        return SHOWN
    at = SHOWN.index("val_accuracy") + 1
    return [*SHOWN[:at], objective, *SHOWN[at:]]


def write_leaderboard(board: pd.DataFrame, run_dir: Path) -> Path:
    """Write leaderboard.csv and leaderboard.parquet into the run dir; return the CSV path."""
    path = run_dir / LEADERBOARD_CSV
    write_atomic(path, board.to_csv(index=False))
    parquet = io.BytesIO()
    board.to_parquet(parquet, index=False)
    write_atomic(run_dir / LEADERBOARD_PARQUET, parquet.getvalue())
    return path


def read_leaderboard(run_dir: str | Path) -> pd.DataFrame:
    """The leaderboard a search wrote into `run_dir` (for runs without a history file)."""
    path = Path(run_dir) / LEADERBOARD_CSV
    if not path.is_file():
        raise AutomlError(
            f"no {LEADERBOARD_CSV} in {str(run_dir)!r}; pass the --run-dir of a search"
        )
    try:
        board = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AutomlError(f"{path} is not a readable leaderboard: {exc}") from None
    missing = [c for c in COLUMNS if c not in board.columns]
    if missing:
        raise AutomlError(f"{path} is not an automl leaderboard: it lacks the column(s) "
                          f"{missing[:5]}; was it written by this version of `automl search`?")
    return board


def select_rows(board: pd.DataFrame, top: int | None = None, sort: str | None = None
                ) -> pd.DataFrame:
    """The board sorted by `sort` (a column, `col:desc` for descending) and cut to `top`
    rows."""
    if sort:
        column, _, order = sort.partition(":")
        if order not in ("", "asc", "desc"):
            raise AutomlError(f"--sort {sort}: the order after ':' must be asc or desc")
        descending = order == "desc"
        if column not in board.columns:
            raise AutomlError(f"--sort {sort}: no column {column!r}; columns: "
                              f"{', '.join(board.columns)}")
        board = board.sort_values(column, ascending=not descending, na_position="last",
                                  kind="stable")
    if top is not None:
        if top < 1:
            raise AutomlError(f"--top {top}: must be at least 1")
        board = board.head(top)
    return board


def render(board: pd.DataFrame, fmt: str) -> str | bytes:
    """The board in one of `FORMATS` (parquet as bytes, the others as text)."""
    if fmt == "table":
        return format_table(board)
    if fmt == "csv":
        return board.to_csv(index=False)
    if fmt == "parquet":
        buffer = io.BytesIO()
        board.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "markdown":
        return to_markdown(board[shown_columns(board)])
    if fmt == "json":
        rows = [{k: _json_value(v) for k, v in row.items()} for row in board.to_dict("records")]
        return json.dumps(rows, indent=2)
    raise AutomlError(f"--format {fmt}: must be one of {', '.join(FORMATS)}")


def format_table(board: pd.DataFrame, limit: int | None = None) -> str:
    """A readable text table of the main columns, then each errored trial's cause."""
    shown = board[shown_columns(board)]
    shown = shown.head(limit) if limit else shown
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    for _, row in board[board["status"] == "errored"].iterrows():
        text += f"\n  trial {row['trial_id']} errored: {row['error']}"
    return text


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no `tabulate` dependency)."""
    def cell(value: Any) -> str:
        value = _json_value(value)
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return None if value is pd.NA or value is pd.NaT else value
