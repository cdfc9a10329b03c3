"""Selection: which trial a search picks, from a built board. Trials that meet the
deployment constraints and did not error come first, then by the objective (the best
validation `search.metric` over a trial's epochs; after a final-seeds phase the repeated
configurations by their mean, the seed closest to it first); ties go to the cheaper trial
(fewer device-hours, then fewer trainable parameters).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from automl.errors import AutomlError


@dataclass(frozen=True)
class Constraints:
    """Deployment limits a selected trial must meet (None: no limit)."""

    max_params: float | None = None
    """Total parameters of the model."""
    max_latency_ms: float | None = None
    """Per-sample inference latency measured in the trial."""

    def describe(self) -> str:
        """`max_params ≤ 5e+06, max_latency_ms ≤ 20` (empty without limits)."""
        limits = [f"{k} ≤ {v:g}" for k, v in vars(self).items() if v is not None]
        return ", ".join(limits)


def config_id(params: Mapping[str, Any]) -> str:
    """One short id per configuration, whatever its seed (`search.final_seeds` repeats a
    configuration with other seeds; their rows share it)."""
    rest = {k: v for k, v in params.items() if k != "seed"}
    return hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:10]


def seed_groups(board: pd.DataFrame) -> None:
    """`seed_runs`, `seed_mean`, `seed_se` of every configuration that ran with two or more
    seeds: how many seeds, the mean (and its standard error) over seeds of their validation
    scores, what selection compares for them."""
    objective = objective_column(board)
    scored = board[board[objective].notna() & (board["status"] != "errored")]
    # One value per seed: TPE may suggest a configuration twice with the same seed, and
    # those two runs are no independent repetition.
    per_seed = scored.groupby(["config_id", "seed"])[objective].mean()
    stats = per_seed.groupby(level="config_id").agg(["count", "mean", "std"])
    stats = stats[stats["count"] >= 2]
    board["seed_runs"] = board["config_id"].map(stats["count"])
    board["seed_mean"] = board["config_id"].map(stats["mean"])
    board["seed_se"] = board["config_id"].map(stats["std"] / stats["count"] ** 0.5)


def rank(board: pd.DataFrame, constraints: Constraints) -> pd.DataFrame:
    """Mark which trials meet `constraints` and order the board (see the module doc)."""
    board = board.copy()
    eligible = pd.Series(True, index=board.index)
    if constraints.max_params is not None:
        eligible &= board["total_params"].fillna(math.inf) <= constraints.max_params
    if constraints.max_latency_ms is not None:
        eligible &= board["latency_ms"].fillna(math.inf) <= constraints.max_latency_ms
    board["eligible"] = eligible
    board["_last"] = ~eligible | (board["status"] == "errored")
    # After a final-seeds phase the repeated configurations come first, by their mean, and
    # within one the seed closest to the mean (what gets exported).
    objective = objective_column(board)
    repeated = board["seed_mean"].notna() if "seed_mean" in board else pd.Series(
        False, index=board.index)
    board["_unrepeated"] = ~repeated
    board["_score"] = board["seed_mean"].where(repeated, board[objective]) if repeated.any() \
        else board[objective]
    board["_off_mean"] = (board[objective] - board["_score"]).abs()
    board = board.sort_values(
        ["_last", "_unrepeated", "_score", "_off_mean", "device_hours", "trainable_params"],
        ascending=[True, True, False, True, True, True], na_position="last", kind="stable",
    ).drop(columns=["_last", "_unrepeated", "_score", "_off_mean"]).reset_index(drop=True)
    board["rank"] = range(1, len(board) + 1)
    return board


def objective_column(board: pd.DataFrame) -> str:
    """The board column trials are ranked by: `val_<metric>` (boards from before
    `search.metric` had a choice: `val_accuracy`)."""
    metrics = board["metric"].dropna() if "metric" in board else pd.Series(dtype=object)
    column = f"val_{metrics.iloc[0]}" if len(metrics) else "val_accuracy"
    return column if column in board else "val_accuracy"


def best_trial(board: pd.DataFrame, trial_id: str | None = None) -> pd.Series:
    """The top-ranked eligible trial with a checkpoint, or the named one."""
    if trial_id is not None:
        match = board[board["trial_id"].astype(str) == str(trial_id)]
        if match.empty:
            raise AutomlError(
                f"no trial {trial_id!r} on the leaderboard; known: {', '.join(board['trial_id'])}"
            )
        row = match.iloc[0]
        if not isinstance(row["checkpoint"], str):
            raise AutomlError(f"trial {trial_id} has no checkpoint ({row['status']})")
        return row
    if not has_checkpoint(board).any():
        raise AutomlError("no trial produced a checkpoint; see the error column of the leaderboard")
    chosen = selected(board)
    if chosen is None:
        raise AutomlError("no trial with a checkpoint meets the constraints; relax "
                          "--max-params / --max-latency-ms (see the leaderboard's "
                          "total_params and latency_ms columns)")
    return chosen


def selected(board: pd.DataFrame) -> pd.Series | None:
    """The top-ranked trial that has a checkpoint and meets the constraints, or None."""
    usable = board[has_checkpoint(board) & board["eligible"].astype(bool)]
    return usable.iloc[0] if len(usable) else None


def has_checkpoint(board: pd.DataFrame) -> pd.Series:
    """Which trials reported a validation score with a checkpoint."""
    return board["checkpoint"].apply(lambda c: isinstance(c, str))
