"""The Ray task bodies of soups and ensembles: each loads models and runs forward passes on a
worker anywhere in the cluster (on its GPU when it has one), never on the driver (issue 29).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from automl import storage
from automl.trial.predictions import Predictions

BN_BATCHES = 32
"""Training batches (of `predictions.BATCH` rows) a soup's BatchNorm statistics are
re-estimated on: ≈ 2,000 examples, as timm's and the soup papers' BN recomputation use."""


def soup_predictions(locations: list[str], val_folder: str, train_folder: str | None,
                     save_to: str | None = None, metrics: dict[str, Any] | None = None
                     ) -> Predictions:
    """The uniform soup of the checkpoints at `locations` on every row of `val_folder`:
    averaged weights, the statistics of the BatchNorm layers members trained re-estimated on
    `train_folder` (eval transform), then one forward pass. With `save_to`, the soup is also
    written there as a checkpoint (weights + plan, `metrics` beside them) that export reads
    like a trial's."""
    import torch

    from automl.combine.predictions import predict_model
    from automl.combine.soup import load_soup, recompute_batchnorm
    from automl.tasks import get_task
    from automl.trial.checkpoints import save_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plan, model, varied = load_soup(locations)
    model = model.to(device)
    task = get_task(plan.task)
    if train_folder is not None and varied:
        recompute_batchnorm(model, _train_inputs(task, plan, train_folder, device),
                            task.forward, only=varied)
    found = predict_model(plan, model.eval(), device, val_folder)
    if save_to is not None:
        accuracy = float((found.logits.argmax(axis=1) == found.labels).mean())
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(model.cpu(), plan, Path(tmp), val_accuracy=accuracy,
                            **(metrics or {}))
            _place(Path(tmp), save_to)
    return found


def _train_inputs(task: Any, plan: Any, folder: str, device: Any) -> Any:
    """Up to `BN_BATCHES` batches of training inputs under the eval transform."""
    from automl.combine.predictions import BATCH
    from automl.data.shards import read_table

    served = 0
    for file in storage.list_files(folder, ".parquet"):
        table = read_table(file)
        for start in range(0, table.num_rows, BATCH):
            if served >= BN_BATCHES:
                return
            inputs, _ = task.collate(table.slice(start, BATCH), plan, device)
            served += 1
            yield inputs


def _place(local: Path, target: str) -> None:
    """Put the folder `local` at `target` whole: a local target is renamed into place (a
    reader sees all of it or none), an object store gets its files."""
    if "://" in target:
        storage.upload(local, target)
        return
    import shutil

    final = Path(target)
    if final.exists():  # a soup's folder is named by its build time: never replace one
        raise FileExistsError(f"{final} exists; run the combine again for a new name")
    staging = final.with_name(f".{final.name}.partial")
    shutil.copytree(local, staging)
    staging.rename(final)
