"""Frozen-backbone features, computed once per (backbone, weights, prepared data,
preprocessing) and kept next to the prepared data, and the transferability ranking of the
search's backbones made from them before the first trial.

Each backbone's features are extracted by a Ray task on the cluster reading the prepared
datasets (the driver holds no example); the cache file is content-keyed and written under a
temporary name then moved, so concurrent searches on the same data never read half a file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from automl import paths, storage
from automl.tasks import get_task
from automl.trial.plan import TrialPlan

RANK_TRAIN_ROWS = 1_000
"""Training examples whose features the ranking uses (the head of the shuffled split)."""
RANK_VAL_ROWS = 500
FEATURES_DIR = "features"


def feature_location(data_root: str, variant: str, plan_dict: dict[str, Any],
                     rows: tuple[int, int]) -> str:
    """Cache file of one backbone's features on one prepared variant of the data (the data's
    content fingerprint is part of `data_root`)."""
    key = {k: plan_dict[k] for k in ("backbone", "weights", "preprocessing", "max_length",
                                     "pooling")}
    key["weights_content"] = weights_fingerprint(str(plan_dict["weights"]))
    digest = hashlib.sha256(json.dumps([key, rows], sort_keys=True).encode()).hexdigest()
    return storage.join(data_root, variant, FEATURES_DIR, f"{digest[:24]}.npz")


def weights_fingerprint(weights: str) -> str | None:
    """SHA-256 of a `file:` weights file (or of every file of a model folder): a file
    replaced under the same name gets new cached features. On object storage, the object's
    size and modification time stand for its content. None for other sources."""
    if not weights.startswith("file:"):
        return None
    path = weights.removeprefix("file:")
    if paths.is_remote(path):
        fs, key = storage.filesystem(path)
        info = fs.get_file_info(key)
        return f"{info.size}-{info.mtime_ns}"
    found = Path(path)
    files = sorted(p for p in found.rglob("*") if p.is_file()) if found.is_dir() else [found]
    digest = hashlib.sha256()
    for file in files:
        info = file.stat()
        digest.update(_content_digest(str(file), info.st_size, info.st_mtime_ns).encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, computed once per (path, size, mtime) in this process."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(plan_dict: dict[str, Any], train: Any, val: Any, location: str
            ) -> dict[str, Any]:
    """Ray task: the frozen backbone's pooled features of the first rows of `train` and
    `val` (Ray Datasets), from the cache at `location` or computed and cached there."""
    started = time.time()
    if storage.exists(location):
        return {**read_arrays(location), "seconds": time.time() - started, "cached": True}
    import torch

    from automl.trial.steps import fast_layout

    torch.set_num_threads(1)
    plan = TrialPlan.from_dict(plan_dict)
    task = get_task(plan.task)
    model, layers = task.build_model(plan)
    model = fast_layout(model).eval()
    captured: list[torch.Tensor] = []
    head = model.get_submodule(_head_module(layers.head))
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    arrays: dict[str, np.ndarray] = {}
    try:
        for split, data, rows in (("train", train, RANK_TRAIN_ROWS), ("val", val, RANK_VAL_ROWS)):
            labels: list[np.ndarray] = []
            captured.clear()
            seen = 0
            with torch.no_grad():
                for batch in data.iter_batches(batch_size=64, batch_format="pyarrow"):
                    batch = batch.slice(0, rows - seen)
                    inputs, target = task.collate(batch, plan, torch.device("cpu"))
                    task.forward(model, inputs)
                    labels.append(target.numpy())
                    seen += batch.num_rows
                    if seen >= rows:
                        break
            arrays[split] = torch.cat(captured).float().flatten(1).numpy()
            arrays[f"{split}_labels"] = np.concatenate(labels)
    finally:
        hook.remove()
    write_arrays(location, arrays)
    return {**arrays, "seconds": time.time() - started, "cached": False}


def write_arrays(location: str, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays as one .npz at `location` (a path or URI), written under a temporary name
    and then moved: a concurrent reader sees the whole file or none."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type] # numpy's stub types **kwds poorly
    partial = f"{location}.{uuid.uuid4().hex}.partial"
    storage.write_bytes(partial, buffer.getvalue())
    storage.move(partial, location)


def read_arrays(location: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz written by `write_arrays`."""
    return dict(np.load(io.BytesIO(storage.read_bytes(location)), allow_pickle=False))


def _head_module(head_params: list[str]) -> str:
    """The module holding the head's weight (`classifier.weight` → `classifier`)."""
    weight = next(p for p in head_params if p.endswith("weight"))
    return weight.rsplit(".", 1)[0]
