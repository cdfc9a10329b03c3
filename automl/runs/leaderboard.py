"""Trial records → a ranked, fixed-column leaderboard DataFrame, with the two transfer risks
(negative transfer, overfitting) and deployment constraints made explicit.

Each row's validation score is its best epoch by `search.metric` (`val_se`: that score's
standard error); the order is `automl.runs.selection.rank`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from automl.runs.history import CHECKPOINT_PATH, DRIVER_LOST, OUT_OF_TIME, TrialRecord
from automl.runs.selection import (
    Constraints,
    config_id,
    objective_column,
    rank,
    seed_groups,
)
from automl.tasks import get_task
from automl.trial.context import SearchContext, make_plan
from automl.trial.metrics import binomial_se, current_names
from automl.trial.plan import TrialPlan

OVERFIT_GAP = 0.10
"""Train accuracy above validation accuracy by more than this, at the selected epoch, is
flagged as overfitting."""
STATUSES = ("finished", "stopped", "out_of_time", "errored", "interrupted", "running")
"""stopped: by ASHA; out_of_time: still running when the search's time budget was spent."""
HYPERPARAMETERS = ["unfreeze_fraction", "head_lr", "backbone_lr", "layer_decay", "lp_ft_epochs",
                   "weight_decay", "batch_size", "pooling", "max_length", "seed"]
RECIPE = ["lr_schedule", "warmup", "min_lr_ratio", "label_smoothing", "ema_decay", "augment",
          "crop_scale", "randaugment_magnitude", "random_erasing", "mixup", "cutmix",
          "drop_path_rate", "dropout"]
"""The fine-tuning recipe of each trial, as it ran (`TrialPlan`; blank where it has no
meaning for the task)."""
IMAGE_ONLY = ("augment", "crop_scale", "randaugment_magnitude", "random_erasing", "mixup",
              "cutmix", "drop_path_rate")
CALIBRATION = ["temperature", "val_ece", "val_ece_calibrated", "test_ece",
               "test_ece_calibrated"]
"""The selected trial's temperature (fitted on validation after selection) and expected
calibration error before/after it (`automl.export.calibrate`)."""
TIMING_COLUMNS = ["train_time_s", "data_time_s", "eval_time_s", "checkpoint_time_s"]
"""Trial timings shown under the names the trial reports them by (`trial.metrics`)."""
COLUMNS = [
    "rank", "trial_id", "status", "eligible", "backbone", "weights", "pretrained",
    "unfreeze_depth", "layer_groups", *HYPERPARAMETERS, *RECIPE,
    "metric", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_se",
    "test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_se", *CALIBRATION,
    "config_id", "seed_runs", "seed_mean", "seed_se", "best_epoch", "epochs",
    "val_loss", "train_accuracy", "overfit_gap",
    "overfitting", "transfer_gain", "negative_transfer", "knn_accuracy", "logme",
    "trial_time_s", "device", "device_hours", "trainable_params", "total_params",
    "trainable_pct", "samples_per_s", "peak_memory_mb", "latency_ms",
    "startup_s", "ray_startup_s", "setup_s", "feature_cache", "features_s", *TIMING_COLUMNS,
    "restarts", "worker_nodes", "checkpoint",
    "refit", "error",
]


def build_leaderboard(records: list[TrialRecord], context: SearchContext,
                      constraints: Constraints | None = None, running: bool = False
                      ) -> pd.DataFrame:
    """One row per trial, ranked. `running`: a driver still works on the run, so trials
    without an end event are `running` rather than `interrupted`."""
    board = pd.DataFrame([_row(r, context, running) for r in records], columns=COLUMNS)
    _transfer_gain(board)
    seed_groups(board)
    return rank(board, constraints or Constraints())


def _row(record: TrialRecord, context: SearchContext, running: bool) -> dict[str, Any]:
    plan = make_plan(record.params, context)
    task_fields = get_task(plan.task).plan_fields
    objective = context.objective
    history = [current_names(h) for h in record.history
               if _number(h.get("val_accuracy")) is not None]
    # Ties go to the latest epoch: that is the checkpoint Ray keeps (`trial.checkpoints.retention`).
    best = (max(reversed(history), key=lambda h: _number(h.get(objective)) or -math.inf)
            if history else {})
    last = history[-1] if history else {}
    epochs = int(last.get("epoch", 0))
    if record.error:
        status = "errored"
    elif not record.ended:
        status = "running" if running else "interrupted"
    elif record.cut == DRIVER_LOST:
        status = "interrupted"
    elif epochs >= plan.epochs:
        status = "finished"
    else:
        cut = record.cut == "time_budget" or bool(last.get(OUT_OF_TIME))
        status = "out_of_time" if cut else "stopped"
    resources = context.resources
    gpu = bool(resources.use_gpu)
    per_worker = 1.0 if gpu else float(resources.cpus_per_worker)
    devices = per_worker * int(resources.workers_per_trial)
    train_acc = _number(best.get("train_accuracy"))
    gap = None if train_acc is None else train_acc - best["val_accuracy"]
    trainable, total = _number(last.get("trainable_params")), _number(last.get("total_params"))
    return {
        "trial_id": record.trial_id,
        "status": status,
        "backbone": plan.backbone,
        "weights": plan.weights,
        "pretrained": plan.pretrained,
        "unfreeze_depth": last.get("unfreeze_depth"),
        "layer_groups": last.get("layer_groups"),
        **{k: getattr(plan, k) for k in HYPERPARAMETERS if k not in ("pooling", "max_length")},
        **{k: getattr(plan, k) if k in task_fields else None for k in ("pooling", "max_length")},
        **_recipe(plan),
        "config_id": config_id(record.params),
        "metric": context.metric,
        "val_accuracy": best.get("val_accuracy"),
        "val_balanced_accuracy": best.get("val_balanced_accuracy"),
        "val_macro_f1": best.get("val_macro_f1"),
        "val_se": _val_se(best, context.metric),
        # Scored after selection (`automl.export.score`); nothing that ranks reads it.
        **{f"test_{k}": (record.test or {}).get(k)
           for k in ("accuracy", "balanced_accuracy", "macro_f1", "se")},
        **{k: (record.calibration or {}).get(k) for k in CALIBRATION},
        "best_epoch": best.get("epoch"),
        "epochs": epochs,
        "val_loss": best.get("val_loss"),
        "train_accuracy": train_acc,
        "overfit_gap": gap,
        "overfitting": None if gap is None else gap > OVERFIT_GAP,
        **_scores(context.transferability.get(str(record.params.get("backbone")))),
        "trial_time_s": record.trial_time_s,
        "device": "gpu" if gpu else "cpu",
        "device_hours": record.trial_time_s * devices / 3600,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100 * trainable / total if trainable is not None and total else None,
        "samples_per_s": last.get("samples_per_s"),
        "peak_memory_mb": max((_number(h.get("peak_memory_mb")) or 0 for h in history),
                              default=None) or None,
        "latency_ms": last.get("latency_ms"),
        **_startup(record, last),
        "setup_s": last.get("setup_s"),
        "feature_cache": last.get("feature_cache"),  # hit | built | None (streamed)
        "features_s": last.get("features_s"),
        **{name: last.get(name) for name in TIMING_COLUMNS},
        "restarts": last.get("restarts"),
        "worker_nodes": last.get("worker_nodes"),
        "checkpoint": c if isinstance(c := best.get(CHECKPOINT_PATH), str) else None,
        "refit": _refit_note(record.refit),
        "error": record.error,
    }


def _val_se(best: Mapping[str, Any], metric: str) -> float | None:
    """Standard error of the selected epoch's validation `metric` (accuracy: binomial; the
    others as the trial reported it)."""
    if metric != "accuracy":
        return _number(best.get(f"val_{metric}_se"))
    accuracy, examples = _number(best.get("val_accuracy")), _number(best.get("val_examples"))
    return None if accuracy is None or not examples else binomial_se(accuracy, int(examples))


def _recipe(plan: TrialPlan) -> dict[str, Any]:
    """The plan's recipe columns; image-only knobs blank for text, `dropout` for images."""
    image = plan.task == "image"
    values = {k: getattr(plan, k) for k in RECIPE}
    values["augment"] = plan.augmentation
    for key in IMAGE_ONLY:
        values[key] = values[key] if image else None
    values["dropout"] = None if image else plan.dropout
    return values


def _scores(ranked: Mapping[str, Any] | None) -> dict[str, Any]:
    """The backbone's transferability scores from the ranking before the search."""
    return {k: (ranked or {}).get(k) for k in ("knn_accuracy", "logme")}


def _refit_note(refit: dict[str, Any] | None) -> str | None:
    """`3 epoch(s) on train+val (2000 examples) → EXPORT` for a refit trial."""
    if not refit:
        return None
    return (f"{refit.get('epochs')} epoch(s) on train+val ({refit.get('examples')} examples)"
            f" → {refit.get('export')}")


def _transfer_gain(board: pd.DataFrame) -> None:
    """Each pretrained trial's accuracy minus the best from-scratch trial of the same
    architecture (blank without one); below zero, once the trial ended, is negative
    transfer."""
    objective = objective_column(board)
    scored = board[board[objective].notna()]
    scratch = scored[~scored["pretrained"].astype(bool)].groupby("backbone")[objective].max()
    baseline = board["backbone"].map(scratch)
    gain = (board[objective] - baseline).where(board["pretrained"].astype(bool))
    board["transfer_gain"] = gain
    # Flagged only once a trial has ended: a running or interrupted one may still catch up.
    ended = board["status"].isin(["finished", "stopped", "out_of_time"])
    board["negative_transfer"] = (gain < 0).where(gain.notna() & ended)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def outcome(board: pd.DataFrame) -> str:
    """One line a script can grep: how many trials finished, stopped early and errored."""
    counts = board["status"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in STATUSES
             if s in ("finished", "stopped", "errored") or s in counts]
    line = f"{len(board)} trial(s): " + ", ".join(parts).replace("stopped", "stopped early")
    line = line.replace("out_of_time", "cut by the time budget")
    errored = int(counts.get("errored", 0))
    if errored:
        line += f" ({errored} of {len(board)} trials errored)"
    return line


def failure_report(board: pd.DataFrame, log_dir: str | Path) -> str:
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
                     f"(e.g. {log_dir}/{example}.error.txt)")
    else:
        lines.append("  every trial ended before its first evaluation (stopped or interrupted)")
    lines.append(f"  Ray's log: {log_dir}/ray.log")
    return "\n".join(lines)


def _startup(record: TrialRecord, last: dict[str, Any]) -> dict[str, Any]:
    """Trial start (the driver's start event) → first training step, and the part of it
    before the model was set up (trial process, worker group, imports); the trial's own
    clock when the start event or the step time is missing."""
    first_step, setup = _number(last.get("first_step_at")), _number(last.get("setup_s"))
    if first_step is None or record.started_at is None or setup is None:
        return {"startup_s": last.get("startup_s"), "ray_startup_s": last.get("ray_startup_s")}
    startup = max(0.0, first_step - record.started_at)
    return {"startup_s": startup, "ray_startup_s": max(0.0, startup - setup)}
