"""Score a trained model on a prepared split after the search: the test split, which no
trial, ranking or selection ever reads (`automl.data.catalog.SEARCH_SPLITS`).

Scoring is deterministic (the eval transform, no augmentation) and may be repeated; its
result is only reported — nothing that ranks or selects trials receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from automl import storage
from automl.trial.metrics import binomial_se

BATCH = 64


@dataclass(frozen=True)
class SplitScore:
    """Accuracy of one model on one split, with its binomial standard error."""

    accuracy: float
    loss: float
    examples: int

    @property
    def se(self) -> float:
        """Binomial standard error of the accuracy."""
        return binomial_se(self.accuracy, self.examples)

    def to_json(self) -> dict[str, Any]:
        """Plain values for the run's history and summary (the SE included)."""
        return {**asdict(self), "se": self.se}


def score_checkpoint(location: str, folder: str) -> SplitScore:
    """The checkpoint at `location` (path or URI) scored on every prepared row in `folder`
    (a split's shard folder), in this process, on its GPU when it has one."""
    import torch
    import torch.nn.functional as F

    from automl.data.shards import read_table
    from automl.export.writer import load_weights, rebuild
    from automl.tasks import get_task
    from automl.trial.plan import WEIGHTS_FILE, TrialPlan

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    correct = count = 0
    loss = 0.0
    with storage.local_copy(location) as checkpoint:
        plan = TrialPlan.load(checkpoint)
        task = get_task(plan.task)
        model = rebuild(plan, checkpoint)
        load_weights(model, checkpoint / WEIGHTS_FILE, allow_missing_bn_counters=True)
    model = model.to(device).eval()
    with torch.inference_mode():
        for file in storage.list_files(folder, ".parquet"):
            table = read_table(file)
            for start in range(0, table.num_rows, BATCH):
                inputs, labels = task.collate(table.slice(start, BATCH), plan, device)
                logits = task.forward(model, inputs).float()
                correct += int((logits.argmax(1) == labels).sum())
                loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                count += len(labels)
    if count == 0:
        raise ValueError(f"{folder} holds no rows to score")
    return SplitScore(correct / count, loss / count, count)


def score_on_ray(location: str, folder: str, use_gpu: bool = False) -> SplitScore:
    """`score_checkpoint` as a Ray task anywhere in the cluster (the driver loads no model;
    storage must be reachable from every node, as for the trials)."""
    import ray

    task = ray.remote(score_checkpoint).options(num_cpus=1, num_gpus=1 if use_gpu else 0,
                                                max_retries=0)
    return ray.get(task.remote(location, folder))


def score_selected(row: Mapping[str, Any], data_root: str | None, use_gpu: bool = False
                   ) -> SplitScore | None:
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
    return score_on_ray(location, folder, use_gpu)


def describe(score: SplitScore, val_accuracy: float, val_se: float) -> str:
    """`test accuracy 0.853 ± 0.008 on 2000 examples; validation 0.870 ± 0.017: selection
    optimism +0.017` — what the selected model does on data nothing in the search saw."""
    return (f"test accuracy {score.accuracy:.4f} ± {score.se:.4f} on {score.examples} examples "
            f"no trial, ranking or selection saw; validation {val_accuracy:.4f} ± {val_se:.4f}: "
            f"selection optimism {val_accuracy - score.accuracy:+.4f}")
