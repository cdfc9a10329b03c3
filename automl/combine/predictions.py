"""A trial's validation predictions, kept beside the run for soups and ensembles (issue 29).

Each prepared row carries a `key` (an image's location, a text's row), so predictions of
trials whose preprocessing differs (Lite0/1/2 crop differently and so have their own
prepared splits) line up example by example. Files are safetensors (no pickle), written
whole (temporary name, then rename).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from automl import storage
from automl.errors import root_cause
from automl.ownership import write_atomic
from automl.trial.predictions import Predictions, from_bytes, to_bytes

BATCH = 64


def save(predictions: Predictions, location: str | Path) -> str:
    """Write `predictions` to `location` (a path or URI) whole: a local file through a
    temporary name, an object store in one put."""
    data = to_bytes(predictions)
    if "://" in str(location):
        storage.write_bytes(str(location), data)
    else:
        write_atomic(Path(location), data)
    return str(location)


def load(location: str | Path) -> Predictions:
    """Read what `save` wrote."""
    return from_bytes(storage.read_bytes(str(location)), str(location))


def align(found: dict[str, Predictions]) -> tuple[tuple[str, ...], np.ndarray,
                                                  dict[str, np.ndarray]]:
    """The rows every member predicted, in one order: (keys, labels, name → logits). A key
    whose label differs between members is an error (two different splits)."""
    if not found:
        raise ValueError("nothing to align")
    common = set.intersection(*(set(p.keys) for p in found.values()))
    keys = tuple(sorted(common))
    labels: np.ndarray | None = None
    out: dict[str, np.ndarray] = {}
    for name, p in found.items():
        where = {k: i for i, k in enumerate(p.keys)}
        rows = np.array([where[k] for k in keys], dtype=np.int64)
        member_labels = p.labels[rows]
        if labels is None:
            labels = member_labels
        elif not np.array_equal(labels, member_labels):
            raise ValueError(f"{name}: labels differ from the other members' on the same "
                             "rows (predictions of different splits?)")
        out[name] = p.logits[rows]
    assert labels is not None
    return keys, labels, out


def predict_split(location: str, folder: str) -> Predictions:
    """The checkpoint at `location` (path or URI) on every prepared row in `folder`: its
    logits with the rows' keys and labels (the eval transform, in this process, on its GPU
    when it has one)."""
    from automl.export.score import load_for_inference

    plan, model, device = load_for_inference(location)
    return predict_model(plan, model, device, folder)


def predict_model(plan: Any, model: Any, device: Any, folder: str) -> Predictions:
    """`model` (eval mode, on `device`) on every prepared row in `folder`."""
    import torch

    from automl.data.shards import read_table
    from automl.tasks import get_task

    task = get_task(plan.task)
    keys: list[str] = []
    logits: list[Any] = []
    labels: list[Any] = []
    with torch.inference_mode():
        for file in storage.list_files(folder, ".parquet"):
            table = read_table(file)
            for start in range(0, table.num_rows, BATCH):
                batch = table.slice(start, BATCH)
                inputs, batch_labels = task.collate(batch, plan, device)
                logits.append(task.forward(model, inputs).float().cpu())
                labels.append(batch_labels.cpu())
                keys.extend(str(k) for k in batch.column("key").to_pylist())
    if not logits:
        raise ValueError(f"{folder} holds no rows to predict")
    return Predictions(tuple(keys), torch.cat(logits).numpy(), torch.cat(labels).numpy())


PREDICTIONS_DIR = "predictions"
"""Under a run dir: `<trial_id>.val.safetensors`, one per trial with a checkpoint."""


def collect_validation(rows: list[dict[str, Any]], data_root: str, run_location: str,
                       log: Callable[[str], None], use_gpu: bool = False) -> dict[str, str]:
    """Each board row's checkpoint (the one the board names: its best validation epoch)
    predicts its variant's validation split, one Ray task per trial anywhere in the cluster
    (the driver loads no model). Files already there are kept (a resumed or repeated call
    computes only what is missing); a trial whose task fails is left out, with one line in
    `log`. Returns
    trial id → predictions location."""
    import ray

    from automl.data.shards import split_dir
    from automl.tasks import get_task
    from automl.trial.plan import TrialPlan

    task = ray.remote(_predict_and_save).options(num_cpus=1, num_gpus=1 if use_gpu else 0,
                                                 max_retries=0)
    folder = storage.join(run_location, PREDICTIONS_DIR)
    found: dict[str, str] = {}
    pending = {}
    for row in rows:
        location = row.get("checkpoint")
        trial_id = str(row.get("trial_id"))
        if not isinstance(location, str):
            continue
        target = storage.join(folder, f"{trial_id}.val.safetensors")
        if storage.exists(target):
            found[trial_id] = target
            continue
        plan = TrialPlan.read(location)
        val = split_dir(data_root, get_task(plan.task), plan.preprocessing, "val")
        pending[trial_id] = (target, task.remote(location, val, target))
    for trial_id, (target, ref) in pending.items():
        try:
            ray.get(ref)
        except Exception as exc:  # one trial's failure leaves it out, not the rest
            log(f"  predictions of trial {trial_id} left out: {root_cause(exc)}")
            continue
        found[trial_id] = target
    return found


def _predict_and_save(location: str, folder: str, target: str) -> str:
    """Ray task body of `collect_validation`."""
    return save(predict_split(location, folder), target)
