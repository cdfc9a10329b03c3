"""What a trial reports every epoch, by the names the board shows them under.

`EpochMetrics.to_dict()` is the epoch's Tune result (and what `plan.json` beside its
checkpoint records); `RUN/trials.jsonl` keeps it as is and the leaderboard reads the same
names. Histories and checkpoints written before the names were unified used `LEGACY_NAMES`;
`current_names` reads them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automl.runs.history import OUT_OF_TIME

CONFUSION_KEY = "val_confusion"
"""The epoch's validation confusion matrix, saved in `plan.json` beside the metrics (not
reported: K² numbers per epoch would swell the run's history)."""
LEGACY_NAMES = {"train_s": "train_time_s", "data_s": "data_time_s", "eval_s": "eval_time_s",
                "checkpoint_s": "checkpoint_time_s"}
"""Timing names of runs made before the trial and the board used one name per metric."""


def binomial_se(accuracy: float, examples: int) -> float:
    """Standard error of an accuracy measured on `examples` independent examples:
    sqrt(p (1 − p) / n)."""
    if examples <= 0 or math.isnan(accuracy):
        return math.nan
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / examples)


def current_names(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """`metrics` with legacy timing names renamed (a current name wins if both appear)."""
    out = {LEGACY_NAMES.get(k, k): v for k, v in metrics.items() if k in LEGACY_NAMES}
    out.update({k: v for k, v in metrics.items() if k not in LEGACY_NAMES})
    return out


@dataclass
class Timings:
    """A trial's cumulative seconds (saved in its checkpoint: a resumed trial adds to them)."""

    ray_startup_s: float = 0.0
    """Trial process, worker group and imports, before the loop ran."""
    setup_s: float = 0.0
    """Weights, freezing, optimizer (and resume)."""
    startup_s: float = 0.0
    first_step_at: float | None = None
    """Unix time of the first step (with the driver's start event: the whole startup)."""
    features_s: float | None = None
    """Cached frozen features: computing or reading them (probe trials only)."""
    train_time_s: float = 0.0
    data_time_s: float = 0.0
    eval_time_s: float = 0.0
    checkpoint_time_s: float | None = None
    """Saving the checkpoints before this epoch's (None on a trial's first epoch)."""
    train_samples: float = 0.0
    """Training examples seen by all ranks, all epochs."""

    def to_dict(self) -> dict[str, float]:
        """The set values (what checkpoints and results hold)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Timings:
        """Inverse of `to_dict`; reads checkpoints made before the names were unified."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in current_names(raw).items() if k in names})


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch of one trial, as reported to Tune and shown on the board."""

    epoch: int
    val_accuracy: float
    val_loss: float
    val_examples: int
    """All ranks' shards, summed: the whole validation set."""
    train_loss: float
    train_accuracy: float
    train_examples: int
    """This rank's training examples this epoch."""
    samples_per_s: float
    peak_memory_mb: float | None
    unfreeze_depth: int
    layer_groups: int
    trainable_params: int
    total_params: int
    worker_nodes: str
    restarts: int
    timings: Timings
    latency_ms: float | None = None
    """Per-example inference latency, measured once per trial run."""
    feature_cache: str | None = None
    """`hit` | `built` for a trial whose frozen epochs trained on cached features."""
    out_of_time: bool = False
    """Another epoch would have ended after the search's deadline: this was the last."""
    val_balanced_accuracy: float | None = None
    val_balanced_accuracy_se: float | None = None
    val_macro_f1: float | None = None
    val_macro_f1_se: float | None = None
    """From the epoch's confusion matrix (`automl.trial.classification`), like accuracy."""

    def to_dict(self) -> dict[str, Any]:
        """The flat result: every metric by its board name; unset optional ones left out."""
        optional = ("latency_ms", "feature_cache", "val_balanced_accuracy",
                    "val_balanced_accuracy_se", "val_macro_f1", "val_macro_f1_se")
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("timings", "out_of_time", *optional)}
        out.update({k: v for k in optional if (v := getattr(self, k)) is not None})
        out.update(self.timings.to_dict())
        if self.out_of_time:
            out[OUT_OF_TIME] = True
        return out
