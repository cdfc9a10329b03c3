"""Where the combine step's inputs come from (issue 29): the validation predictions each
trial's checkpoint keeps, the prepared split folders of a checkpoint's preprocessing, and
Ray tasks for the forward passes (the driver loads no model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from automl import storage
from automl.combine import predictions as stored
from automl.trial.plan import TrialPlan
from automl.trial.predictions import PREDICTIONS_FILE, Predictions


def number(value: Any) -> float | None:
    """A board cell as a float (None when empty or not a number)."""
    try:
        found = float(value)
    except (TypeError, ValueError):
        return None
    return None if found != found else found


def usable_rows(board: Any) -> list[dict[str, Any]]:
    """The board's trials a candidate may be built from: those with a checkpoint that meet
    the run's deployment limits (the board's `eligible`, from `--max-params` /
    `--max-latency-ms`)."""
    return [r for r in board.to_dict("records")
            if isinstance(r.get("checkpoint"), str) and bool(r.get("eligible", True))]


def within_limits(rows: dict[str, dict[str, Any]], max_latency_ms: float | None,
                  max_params: float | None) -> Callable[[Any], bool] | None:
    """Whether an ensemble of the trials in `rows` (by id) named in its argument stays within
    the summed latency and parameter limits (None: no limit). A member whose figure is
    unknown breaks a limit on it, as an unmeasured trial is not eligible either."""
    limits = {c: v for c, v in (("latency_ms", max_latency_ms), ("total_params", max_params))
              if v is not None}
    if not limits:
        return None

    def allowed(members: Any) -> bool:
        for column, limit in limits.items():
            values = [number(rows[t].get(column)) for t in members]
            if any(v is None for v in values) or sum(v or 0.0 for v in values) > limit:
                return False
        return True

    return allowed


def remote(function: Callable[..., Any], use_gpu: bool) -> Any:
    """`function` as a Ray task on one CPU (and a GPU when trials had one), never retried."""
    import ray

    return ray.remote(function).options(num_cpus=1, num_gpus=1 if use_gpu else 0,
                                        max_retries=0)


def validation_predictions(rows: list[dict[str, Any]], data_root: str, run_location: str,
                           use_gpu: bool, log: Callable[[str], Any]) -> dict[str, Predictions]:
    """Each row's validation predictions: those its checkpoint keeps (written by the trial
    loop), else predicted again in a Ray task (runs from before trials kept them)."""
    found: dict[str, Predictions] = {}
    missing = []
    for row in rows:
        location = storage.join(str(row["checkpoint"]), PREDICTIONS_FILE)
        if storage.exists(location):
            found[str(row["trial_id"])] = stored.load(location)
        else:
            missing.append(row)
    if missing:
        log(f"predicting the validation split of {len(missing)} trial(s) whose checkpoints "
            "keep no predictions (Ray tasks)")
        done = stored.collect_validation(missing, data_root, run_location, log, use_gpu)
        found.update({t: stored.load(location) for t, location in done.items()})
    return found


def in_order(predictions: Predictions, keys: tuple[str, ...]) -> np.ndarray:
    """`predictions`' logits in the order of `keys`."""
    where = {k: i for i, k in enumerate(predictions.keys)}
    return predictions.logits[np.array([where[k] for k in keys], dtype=np.int64)]


def folders(location: str, data_root: str, *splits: str) -> list[str]:
    """The prepared folders of `splits` in the preprocessing of the checkpoint at `location`."""
    from automl.data.shards import split_dir
    from automl.tasks import get_task

    plan = TrialPlan.read(location)
    return [split_dir(data_root, get_task(plan.task), plan.preprocessing, s) for s in splits]

