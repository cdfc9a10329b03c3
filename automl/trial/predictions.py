"""A trial's validation predictions, kept in each epoch's checkpoint (issue 29).

Every epoch's evaluation already computes the logits of every validation example; keeping
them (with each row's `key` and label) beside the weights costs one small file, and gives
soups and ensembles the predictions of exactly the checkpoint the board names, with no
second forward pass. Rows carry keys so trials whose preprocessing differs (their own
prepared splits) line up example by example. safetensors: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

PREDICTIONS_FILE = "val_predictions.safetensors"
MAX_VALUES = 8_000_000
"""Above rows × classes = 8 M (32 MB of float32 per checkpoint) the loop keeps none; the
combine step then predicts the split again in a Ray task."""


@dataclass(frozen=True)
class Predictions:
    """One model's logits on one split, row by row with the rows' keys and labels."""

    keys: tuple[str, ...]
    logits: np.ndarray
    """float32 N × K."""
    labels: np.ndarray
    """int64 N."""

    def __post_init__(self) -> None:
        if not len(self.keys) == len(self.logits) == len(self.labels):
            raise ValueError(f"{len(self.keys)} keys, {len(self.logits)} logits and "
                             f"{len(self.labels)} labels: one each per row")


def to_bytes(predictions: Predictions) -> bytes:
    """safetensors bytes: logits and labels, the keys as JSON in its metadata."""
    from safetensors.numpy import save as save_tensors

    return bytes(save_tensors(
        {"logits": np.ascontiguousarray(predictions.logits, dtype=np.float32),
         "labels": np.ascontiguousarray(predictions.labels, dtype=np.int64)},
        metadata={"keys": json.dumps(list(predictions.keys))}))


def from_bytes(data: bytes, where: str = "<bytes>") -> Predictions:
    """Read what `to_bytes` wrote (the header is JSON: nothing is unpickled)."""
    from safetensors.numpy import load as load_tensors

    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    keys = (header.get("__metadata__") or {}).get("keys")
    if keys is None:
        raise ValueError(f"{where}: not a predictions file written by automl (no keys)")
    tensors = load_tensors(data)
    return Predictions(tuple(json.loads(keys)), tensors["logits"], tensors["labels"])


class Collector:
    """Gathers one rank's validation logits batch by batch, in the order evaluated."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.complete = True
        """False once a batch came without keys (data prepared before keys existed)."""

    def add_keys(self, batch: Any) -> None:
        """Note the keys of a prepared batch (a pyarrow table) as it goes to the decoder."""
        if "key" in batch.column_names:
            self.keys.extend(str(k) for k in batch.column("key").to_pylist())
        else:
            self.complete = False

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep a batch's logits and labels where they are: copied to the host once, in
        `local`, so a GPU's validation loop gains no host sync per batch."""
        self.logits.append(logits.detach().float())
        self.labels.append(labels.detach())

    def local(self) -> Predictions | None:
        """This rank's predictions, or None when keys are missing or it is too large."""
        rows = sum(len(t) for t in self.logits)
        if not self.complete or not self.logits or rows != len(self.keys):
            return None
        if rows * self.logits[0].shape[1] > MAX_VALUES:
            return None
        return Predictions(tuple(self.keys), torch.cat(self.logits).cpu().numpy(),
                           torch.cat(self.labels).cpu().numpy().astype(np.int64))

    def gathered(self, world: int) -> Predictions | None:
        """Every rank's predictions on rank 0 (the others get None): an object gather over
        the trial's own process group; None when any rank has none."""
        mine = self.local()
        if world <= 1:
            return mine
        parts: list[Any] = [None] * world
        torch.distributed.all_gather_object(
            parts, None if mine is None else (mine.keys, mine.logits, mine.labels))
        if any(p is None for p in parts) or torch.distributed.get_rank() != 0:
            return None
        return Predictions(tuple(k for p in parts for k in p[0]),
                           np.concatenate([p[1] for p in parts]),
                           np.concatenate([p[2] for p in parts]))
