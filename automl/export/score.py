"""Score a trained model on a prepared split after the search: the test split, which no
trial, ranking or selection ever reads (`automl.data.catalog.SEARCH_SPLITS`).

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


def score_checkpoint(location: str, folder: str, metric: str = "accuracy") -> SplitScore:
    """The checkpoint at `location` (path or URI) scored on every prepared row in `folder`
    (a split's shard folder), in this process, on its GPU when it has one."""
    import torch

    from automl.data.shards import read_table
    from automl.export.writer import load_weights, rebuild
    from automl.tasks import get_task
    from automl.trial.classification import Evaluation, count_batch, new_counts
    from automl.trial.plan import WEIGHTS_FILE, TrialPlan

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with storage.local_copy(location) as checkpoint:
        plan = TrialPlan.load(checkpoint)
        task = get_task(plan.task)
        model = rebuild(plan, checkpoint)
        load_weights(model, checkpoint / WEIGHTS_FILE, allow_missing_bn_counters=True)
    model = model.to(device).eval()
    counts = new_counts(plan.num_classes, device)
    with torch.inference_mode():
        for file in storage.list_files(folder, ".parquet"):
            table = read_table(file)
            for start in range(0, table.num_rows, BATCH):
                inputs, labels = task.collate(table.slice(start, BATCH), plan, device)
                count_batch(counts, task.forward(model, inputs).float(), labels)
    found = Evaluation.from_counts(counts.cpu().numpy(), plan.num_classes)
    if found.examples == 0:
        raise ValueError(f"{folder} holds no rows to score")
    return SplitScore(found.loss, found.examples, found.confusion, metric)


def score_on_ray(location: str, folder: str, use_gpu: bool = False, metric: str = "accuracy"
                 ) -> SplitScore:
    """`score_checkpoint` as a Ray task anywhere in the cluster (the driver loads no model;
    storage must be reachable from every node, as for the trials)."""
    import ray

    task = ray.remote(score_checkpoint).options(num_cpus=1, num_gpus=1 if use_gpu else 0,
                                                max_retries=0)
    # Ray's stubs type a remote function by its arity and miss the defaulted argument.
    return ray.get(task.remote(location, folder, metric))  # type: ignore[call-arg]


def score_selected(row: Mapping[str, Any], data_root: str | None, use_gpu: bool = False,
                   metric: str = "accuracy") -> SplitScore | None:
    """The board row's checkpoint scored on its variant's test split, as a Ray task; None
    when the run has no test split (or no checkpoint)."""
    from automl.data.shards import split_dir
    from automl.tasks import get_task
    from automl.trial.plan import TrialPlan

    location = row.get("checkpoint")
    if not isinstance(location, str) or not data_root:
        return None
    plan = TrialPlan.read(location)
    folder = split_dir(data_root, get_task(plan.task), plan.preprocessing, "test")
    if not storage.exists(folder) or not storage.list_files(folder, ".parquet"):
        return None
    return score_on_ray(location, folder, use_gpu, metric)


def describe(score: SplitScore, val_value: float, val_se: float) -> str:
    """`test accuracy 0.853 ± 0.008 on 2000 examples; validation 0.870 ± 0.017: selection
    optimism +0.017` — what the selected model does on data nothing in the search saw."""
    name = score.metric
    return (f"test {name} {score.value:.4f} ± {score.se:.4f} on {score.examples} examples "
            f"no trial, ranking or selection saw; validation {val_value:.4f} ± {val_se:.4f}: "
            f"selection optimism {val_value - score.value:+.4f}")
