"""Trial checkpoints: export-ready weights + plan, and the training state a restart resumes.

Every epoch rank 0 writes one directory:
- `model.safetensors` + `plan.json` (+ task extras such as tokenizer files): what export reads;
- `train_state.pt`: optimizer moments, the epoch reached, best score, restart count, data
  stream position and RNG states, so a trial restarted after a lost worker or node continues
  where it stopped and trains exactly as if it had not been interrupted.

Ray keeps the best checkpoint by `val_accuracy` plus the latest one (its checkpoint manager
never deletes the latest), so a trial's disk use is at most two of these directories.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automl.tasks import get_task
from automl.trial.metrics import CONFUSION_KEY, Timings, current_names
from automl.trial.plan import PLAN_FILE, WEIGHTS_FILE, TrialPlan

TRAIN_STATE_FILE = "train_state.pt"


@dataclass
class TrainState:
    """Where a trial stands after an epoch."""

    epoch: int = 0
    best: float = -1.0
    restarts: int = 0
    stream: dict[str, int] = field(default_factory=dict)
    """`EpochBatches.position()`: passes started and batches taken from the current one."""
    timings: Timings = field(default_factory=Timings)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    inner = getattr(model, "module", model)
    assert isinstance(inner, nn.Module)
    return inner


def retention(keep: str) -> Any:
    """Ray Train's CheckpointConfig for a trial or refit: the best checkpoint by `keep`, plus
    the latest (Ray never deletes the latest): export reads the best, a restart the latest."""
    import ray.train

    return ray.train.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=keep,
                                      checkpoint_score_order="max")


def save_checkpoint(model: nn.Module, plan: TrialPlan, directory: Path, **metrics: Any) -> None:
    """Weights as safetensors (no pickle) plus the plan that rebuilds them."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    plan.save(directory, **metrics)
    get_task(plan.task).save_extras(unwrap(model), directory, plan)


def save_train_state(directory: Path, optimizer: torch.optim.Optimizer, state: TrainState,
                     scheduler: Any = None, raw_model: nn.Module | None = None) -> None:
    """The optimizer, LR schedule and loop state next to the weights (loadable with
    weights_only=True); with an EMA the weights file holds the average, and `raw_model`'s
    own weights go here, for the restart."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    extra: dict[str, Any] = {}
    if scheduler is not None:
        extra["scheduler"] = scheduler.state_dict()
    if raw_model is not None:
        extra["raw_model"] = {k: v.detach().cpu() for k, v in unwrap(raw_model).state_dict()
                              .items()}
    torch.save({
        **extra,
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch, "best": state.best, "restarts": state.restarts,
        "stream": dict(state.stream), "timings": state.timings.to_dict(),
        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
        "numpy_rng": [kind, torch.from_numpy(np.asarray(keys, np.int64)), int(pos),
                      int(has_gauss), float(gauss)],
    }, directory / TRAIN_STATE_FILE)


def load_train_state(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any = None, ema: Any = None) -> TrainState:
    """Restore weights (and their EMA), optimizer, LR schedule and RNGs from a checkpoint
    directory; return the loop state (its restart count already incremented)."""
    from safetensors.torch import load_file

    weights = load_file(str(directory / WEIGHTS_FILE))
    saved = torch.load(directory / TRAIN_STATE_FILE, weights_only=True)
    if "raw_model" in saved:
        unwrap(model).load_state_dict(saved["raw_model"])
        if ema is not None:
            ema.module.load_state_dict(weights)
    else:
        unwrap(model).load_state_dict(weights)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and "scheduler" in saved:
        scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    python_rng = saved["python_rng"]
    random.setstate((python_rng[0], tuple(python_rng[1]), python_rng[2]))
    kind, keys, pos, has_gauss, gauss = saved["numpy_rng"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    return TrainState(epoch=saved["epoch"], best=saved["best"], restarts=saved["restarts"] + 1,
                      stream=saved["stream"], timings=Timings.from_dict(saved["timings"]))


def checkpoint_metrics(directory: Path) -> dict[str, Any]:
    """The epoch metrics saved beside a checkpoint's plan (what that epoch reported; not the
    confusion matrix kept beside them)."""
    saved = json.loads((directory / PLAN_FILE).read_text())
    kept = {f.name for f in dataclasses.fields(TrialPlan)} | {CONFUSION_KEY}
    return current_names({k: v for k, v in saved.items() if k not in kept})


def count_group_start(storage: Any) -> int | None:
    """Record one start of a trial's worker group under its Ray Train storage (local or
    S3-like) and return how many starts came before it, i.e. restarts after lost workers or
    nodes, counting those before the first checkpoint, which `TrainState.restarts` misses.

    `storage` is Ray Train's StorageContext (a DeveloperAPI); None when it has changed shape.
    Call on rank 0 only: one marker per group start."""
    import uuid

    import pyarrow.fs

    try:
        fs, root = storage.storage_filesystem, f"{storage.experiment_fs_path}/group_starts"
    except AttributeError:
        return None
    fs.create_dir(root, recursive=True)
    before = len(fs.get_file_info(pyarrow.fs.FileSelector(root)))
    with fs.open_output_stream(f"{root}/{uuid.uuid4().hex}"):
        pass
    return before
