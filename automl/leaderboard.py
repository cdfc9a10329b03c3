"""Trial records → a ranked, fixed-column leaderboard DataFrame; read, write and print it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from automl.errors import AutomlError
from automl.plan import make_plan
from automl.tasks import get_task

LEADERBOARD_CSV = "leaderboard.csv"
CHECKPOINT_PATH = "checkpoint_path"
"""The history key holding a reported checkpoint's location (Ray's TuneReportCallback)."""
LOG_DIR = "logs"
"""Under the run dir: `<trial_id>.error.txt` (Ray's full error text) and `ray.log`."""
COLUMNS = [
    "rank", "trial_id", "status", "backbone", "weights", "pretrained",
    "unfreeze_fraction", "unfreeze_depth", "layer_groups", "head_lr", "backbone_lr",
    "layer_decay", "lp_ft_epochs", "weight_decay", "batch_size", "pooling", "max_length",
    "seed", "val_accuracy", "best_epoch",
    "epochs", "val_loss", "startup_s", "ray_startup_s", "setup_s", "train_time_s", "data_time_s",
    "eval_time_s",
    "checkpoint_time_s", "trial_time_s",
    "trainable_params", "total_params", "restarts", "worker_nodes", "checkpoint", "error",
]
_SHOWN = ["rank", "trial_id", "status", "backbone", "pretrained", "unfreeze_depth",
          "head_lr", "backbone_lr", "val_accuracy", "epochs", "train_time_s", "startup_s"]


@dataclass(frozen=True)
class TrialRecord:
    """One trial's outcome as plain values: what the leaderboard is built from."""

    trial_id: str
    params: dict[str, Any]
    history: list[dict[str, Any]]
    error: str | None
    trial_time_s: float
    interrupted: bool = False
    """Still running or pending when the search was stopped (Ctrl-C): `--resume` continues it."""


def build_leaderboard(records: list[TrialRecord], static: dict[str, Any]) -> pd.DataFrame:
    """One row per trial, best validation accuracy first; errored trials last."""
    rows = [_row(r, static) for r in records]
    board = pd.DataFrame(rows, columns=COLUMNS)
    board["_errored"] = board["status"] == "errored"
    board = board.sort_values(
        ["_errored", "val_accuracy", "train_time_s"], ascending=[True, False, True],
        na_position="last", kind="stable",
    ).drop(columns="_errored").reset_index(drop=True)
    board["rank"] = range(1, len(board) + 1)
    return board


def _row(record: TrialRecord, static: dict[str, Any]) -> dict[str, Any]:
    plan = make_plan(record.params, static)
    task_fields = get_task(plan.task).plan_fields
    history = [h for h in record.history if _number(h.get("val_accuracy")) is not None]
    # Ties go to the latest epoch: that is the checkpoint Ray keeps (search.py retention).
    best = max(reversed(history), key=lambda h: h["val_accuracy"]) if history else {}
    last = history[-1] if history else {}
    epochs = int(last.get("epoch", 0))
    status = "finished" if epochs >= plan.epochs else "stopped"
    if record.error:
        status = "errored"
    elif record.interrupted:
        status = "interrupted"
    return {
        "trial_id": record.trial_id,
        "status": status,
        "backbone": plan.backbone,
        "weights": plan.weights,
        "pretrained": plan.pretrained,
        "unfreeze_fraction": plan.unfreeze_fraction,
        "unfreeze_depth": last.get("unfreeze_depth"),
        "layer_groups": last.get("layer_groups"),
        "head_lr": plan.head_lr,
        "backbone_lr": plan.backbone_lr,
        "layer_decay": plan.layer_decay,
        "lp_ft_epochs": plan.lp_ft_epochs,
        "weight_decay": plan.weight_decay,
        "batch_size": plan.batch_size,
        **{k: getattr(plan, k) if k in task_fields else None for k in ("pooling", "max_length")},
        "seed": plan.seed,
        "val_accuracy": best.get("val_accuracy"),
        "best_epoch": best.get("epoch"),
        "epochs": epochs,
        "val_loss": best.get("val_loss"),
        "startup_s": last.get("startup_s"),
        "ray_startup_s": last.get("ray_startup_s"),
        "setup_s": last.get("setup_s"),
        "train_time_s": last.get("train_s"),
        "data_time_s": last.get("data_s"),
        "eval_time_s": last.get("eval_s"),
        "checkpoint_time_s": last.get("checkpoint_s"),
        "trial_time_s": record.trial_time_s,
        "trainable_params": last.get("trainable_params"),
        "total_params": last.get("total_params"),
        "restarts": last.get("restarts"),
        "worker_nodes": last.get("worker_nodes"),
        "checkpoint": c if isinstance(c := best.get(CHECKPOINT_PATH), str) else None,
        "error": record.error,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def write_leaderboard(board: pd.DataFrame, run_dir: Path) -> Path:
    """Write leaderboard.csv and leaderboard.parquet into the run dir; return the CSV path."""
    path = run_dir / LEADERBOARD_CSV
    board.to_csv(path, index=False)
    board.to_parquet(run_dir / "leaderboard.parquet", index=False)
    return path


def read_leaderboard(run_dir: str | Path) -> pd.DataFrame:
    """The leaderboard a search wrote into `run_dir`."""
    path = Path(run_dir) / LEADERBOARD_CSV
    if not path.is_file():
        raise AutomlError(
            f"no {LEADERBOARD_CSV} in {str(run_dir)!r}; pass the --run-dir of a finished search"
        )
    try:
        board = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AutomlError(f"{path} is not a readable leaderboard: {exc}") from None
    missing = [c for c in COLUMNS if c not in board.columns]
    if missing:
        raise AutomlError(f"{path} is not an automl leaderboard: it lacks the column(s) "
                          f"{missing[:5]}; was it written by `automl search`?")
    return board


def best_trial(board: pd.DataFrame, trial_id: str | None = None) -> pd.Series:
    """The top-ranked trial with a checkpoint, or the named one."""
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
    usable = board[_has_checkpoint(board)]
    if usable.empty:
        raise AutomlError("no trial produced a checkpoint; see the error column of the leaderboard")
    return usable.iloc[0]


def format_leaderboard(board: pd.DataFrame, limit: int | None = None) -> str:
    """A readable text table of the main columns (full detail stays in the CSV)."""
    shown = board[_SHOWN].head(limit) if limit else board[_SHOWN]
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    errors = board[board["status"] == "errored"]
    for _, row in errors.iterrows():
        text += f"\n  trial {row['trial_id']} errored: {row['error']}"
    return text


def has_result(board: pd.DataFrame) -> bool:
    """True when at least one trial reported a validation score and saved a checkpoint."""
    return bool(_has_checkpoint(board).any())


def _has_checkpoint(board: pd.DataFrame) -> pd.Series:
    return board["checkpoint"].apply(lambda c: isinstance(c, str))


def outcome(board: pd.DataFrame) -> str:
    """One line a script can grep: how many trials finished, stopped early and errored."""
    counts = board["status"].value_counts()
    shown = ("finished", "stopped", "errored", "interrupted")
    parts = [f"{int(counts.get(s, 0))} {s}" for s in shown if s != "interrupted" or s in counts]
    line = f"{len(board)} trial(s): " + ", ".join(parts).replace("stopped", "stopped early")
    errored = int(counts.get("errored", 0))
    if errored:
        line += f" ({errored} of {len(board)} trials errored)"
    return line


def failure_report(board: pd.DataFrame, log_dir: Path) -> str:
    """Why no trial produced a result: the most common root cause, an example, the logs."""
    errored = board[board["status"] == "errored"]
    lines = [f"no trial produced a result: {outcome(board)}"]
    if len(errored):
        errors = errored["error"].fillna("unknown error")
        causes = errors.value_counts()
        cause, count = str(causes.index[0]), int(causes.iloc[0])
        example = errored[errors == cause].iloc[0]["trial_id"]
        lines.append(f"  most common cause ({count} of {len(errored)} errored, e.g. trial "
                     f"{example}): {cause}")
        lines.append(f"  full error of each trial: {log_dir}/<trial_id>.error.txt "
                     f"(e.g. {log_dir / f'{example}.error.txt'})")
    else:
        lines.append("  every trial ended before its first evaluation (stopped or interrupted)")
    lines.append(f"  Ray's log: {log_dir / 'ray.log'}")
    return "\n".join(lines)
