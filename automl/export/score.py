"""Score the selected model after the search on the test split, which no trial, ranking or
selection ever reads (`automl.data.catalog.SEARCH_SPLITS`), and fit its temperature on
validation (`automl.export.calibrate`).

Scoring is deterministic (the eval transform, no augmentation) and may be repeated; its
result is only reported — nothing that ranks or selects trials receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl import storage
from automl.config.schema import METRICS
from automl.export.calibrate import Calibration
from automl.trial.classification import metric_se, metric_value

BATCH = 64


@dataclass(frozen=True)
class SplitScore:
    """One model on one split: its confusion matrix, and the search's metric with its
    standard error (`automl.trial.classification`)."""

    loss: float
    examples: int
    confusion: np.ndarray
    """int64 K × K: row = true class, column = predicted."""
    metric: str = "accuracy"

    @property
    def accuracy(self) -> float:
        """Share of the split predicted right."""
        return metric_value(self.confusion, "accuracy")

    @property
    def value(self) -> float:
        """The search metric on this split."""
        return metric_value(self.confusion, self.metric)

    @property
    def se(self) -> float:
        """Standard error of the search metric."""
        return metric_se(self.confusion, self.metric)

    def to_json(self) -> dict[str, Any]:
        """Plain values for the run's history and summary (the report draws the confusion
        matrix from them)."""
        return {"metric": self.metric, "loss": self.loss, "examples": self.examples,
                **{m: metric_value(self.confusion, m) for m in METRICS}, "se": self.se,
                "confusion": self.confusion.tolist()}


@dataclass(frozen=True)
class SelectedAssessment:
    """What is measured on the selected trial once selection is over."""

    test: SplitScore | None
    """Its score on the test split (None: the run has none)."""
    calibration: Calibration | None
    """Its temperature, fitted on validation, with ECE before/after (None: not asked for)."""


def score_checkpoint(location: str, folder: str, metric: str = "accuracy") -> SplitScore:
    """The checkpoint at `location` (path or URI) scored on every prepared row in `folder`
    (a split's shard folder), in this process, on its GPU when it has one."""
    result = assess_checkpoint(location, None, folder, metric, calibrate=False)
    assert result.test is not None
    return result.test


def assess_checkpoint(location: str, val_folder: str | None, test_folder: str | None,
                      metric: str = "accuracy", calibrate: bool = True) -> SelectedAssessment:
    """Score the checkpoint on the test split (`test_folder`, if any) and, with `calibrate`,
    fit its temperature on the validation split (`val_folder`) and measure ECE before and
    after on both. In this process, on its GPU when it has one."""
    from automl.export.calibrate import calibrate as fit_calibration
    from automl.trial.classification import Evaluation, count_batch, new_counts

    plan, model, device = load_for_inference(location)
    test = _logits(model, plan, test_folder, device) if test_folder else None
    score = None
    if test is not None:
        counts = new_counts(plan.num_classes)
        count_batch(counts, *test)
        found = Evaluation.from_counts(counts.numpy(), plan.num_classes)
        score = SplitScore(found.loss, found.examples, found.confusion, metric)
    calibration = None
    if calibrate and val_folder:
        calibration = fit_calibration(_logits(model, plan, val_folder, device), test)
    return SelectedAssessment(score, calibration)


def load_for_inference(location: str) -> tuple[Any, Any, Any]:
    """(plan, model in eval mode on this process's GPU or CPU, device) of the checkpoint at
    `location` (path or URI)."""
    import torch

    from automl.export.saved import load_weights, rebuild
    from automl.trial.plan import WEIGHTS_FILE, TrialPlan

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with storage.local_copy(location) as checkpoint:
        plan = TrialPlan.load(checkpoint)
        model = rebuild(plan, checkpoint)
        load_weights(model, checkpoint / WEIGHTS_FILE, allow_missing_bn_counters=True)
    return plan, model.to(device).eval(), device


def _logits(model: Any, plan: Any, folder: str, device: Any) -> tuple[Any, Any]:
    """(logits, labels) of every prepared row in `folder`, on the host (float32)."""
    import torch

    from automl.data.shards import read_table
    from automl.tasks import get_task

    task = get_task(plan.task)
    logits, labels = [], []
    with torch.inference_mode():
        for file in storage.list_files(folder, ".parquet"):
            table = read_table(file)
            for start in range(0, table.num_rows, BATCH):
                inputs, batch_labels = task.collate(table.slice(start, BATCH), plan, device)
                logits.append(task.forward(model, inputs).float().cpu())
                labels.append(batch_labels.cpu())
    if not logits:
        raise ValueError(f"{folder} holds no rows to score")
    return torch.cat(logits), torch.cat(labels)


def assess_selected(row: Mapping[str, Any], data_root: str | None, use_gpu: bool = False,
                    metric: str = "accuracy", calibrate: bool = True
                    ) -> SelectedAssessment | None:
    """`assess_checkpoint` of the board row's checkpoint on its variant's splits, as a Ray
    task anywhere in the cluster (the driver loads no model; storage must be reachable from
    every node, as for the trials). None when there is nothing to do: no checkpoint, or
    neither a test split nor calibration."""
    import ray

    from automl.data.shards import split_dir
    from automl.tasks import get_task
    from automl.trial.plan import TrialPlan

    location = row.get("checkpoint")
    if not isinstance(location, str) or not data_root:
        return None
    plan = TrialPlan.read(location)
    folders = {name: split_dir(data_root, get_task(plan.task), plan.preprocessing, name)
               for name in ("val", "test")}
    found = {name: f if storage.exists(f) and storage.list_files(f, ".parquet") else None
             for name, f in folders.items()}
    if found["test"] is None and not (calibrate and found["val"]):
        return None
    task = ray.remote(assess_checkpoint).options(num_cpus=1, num_gpus=1 if use_gpu else 0,
                                                 max_retries=0)
    # Ray's stubs type a remote function by its arity and miss the defaulted arguments.
    return ray.get(task.remote(location, found["val"], found["test"], metric,  # type: ignore[call-arg]
                               calibrate))


def describe(score: SplitScore, val_value: float, val_se: float) -> str:
    """`test accuracy 0.853 ± 0.008 on 2000 examples; validation 0.870 ± 0.017: selection
    optimism +0.017` — what the selected model does on data nothing in the search saw."""
    name = score.metric
    return (f"test {name} {score.value:.4f} ± {score.se:.4f} on {score.examples} examples "
            f"no trial, ranking or selection saw; validation {val_value:.4f} ± {val_se:.4f}: "
            f"selection optimism {val_value - score.value:+.4f}")
