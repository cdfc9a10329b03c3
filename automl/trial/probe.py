"""Linear probes on cached frozen features.

A trial that unfreezes nothing runs its frozen backbone over the same examples every epoch.
Here the backbone runs once per (backbone, weights, prepared data, preprocessing, pooling,
augmentation), in eval mode, over the whole training split (each image also flipped when the
plan flips images) and the validation split; the head's inputs are cached next to the
prepared data, content-keyed, written under a temporary name and moved into place (two trials
building the same file at once both succeed, neither reads half of it). Every epoch then
trains the same head with the same optimizer, loss, batch size, shuffling and augmentation
rate, on those features; checkpoints hold the whole model, so export does not change.

Used by single-rank trials for their epochs that train only the head (all of them with
nothing unfrozen, LP-FT's first `lp_ft_epochs` otherwise); anything else streams.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from automl import storage
from automl.tasks import get_task
from automl.trial import recipe
from automl.trial.checkpoints import unwrap
from automl.trial.classification import count_batch, new_counts
from automl.trial.context import LoopSettings
from automl.trial.features import read_arrays, write_arrays
from automl.trial.plan import TrialPlan
from automl.trial.predictions import Collector
from automl.trial.steps import TRAIN_SAMPLE, EpochStats, check_finite

if TYPE_CHECKING:
    from automl.trial.steps import EpochStats, TrialSetup
    from automl.trial.workers import Worker

CACHE_VERSION = 2
EXTRACT_BATCH = 64


def probe_module(model: nn.Module, head_params: list[str]) -> str | None:
    """The smallest module holding every head parameter and nothing else (None: the head is
    spread over the model, e.g. a ViT's `fc_norm` + `head`, and cannot be split off)."""
    parts = [p.split(".")[:-1] for p in head_params]
    prefix: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) > 1:
            break
        prefix.append(level[0])
    if not prefix:
        return None
    name = ".".join(prefix)
    owned = {f"{name}.{n}" for n, _ in model.get_submodule(name).named_parameters()}
    return name if owned == set(head_params) else None


def cache_location(features_dir: str, plan: TrialPlan) -> str:
    """Where the probe features of `plan`'s backbone on this prepared data live."""
    key = {"version": CACHE_VERSION, "task": plan.task, "backbone": plan.backbone,
           "weights": plan.weights, "preprocessing": plan.preprocessing,
           "max_length": plan.max_length, "pooling": plan.pooling,
           "flip": get_task(plan.task).flips(plan)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return storage.join(features_dir, f"probe-{digest[:24]}.npz")


def cached_probe(worker: Worker, setup: TrialSetup, plan: TrialPlan, settings: LoopSettings,
                 device: torch.device, done: int) -> CachedProbe | None:
    """A `CachedProbe` when this trial's epochs (some, with LP-FT) train only the head of a
    frozen backbone, on one rank, and read the whole training split at least once (a cache
    of a split far larger than the trial reads would cost more than it saves). Not with an
    EMA of weights: the average, not the head trained here, is what such a trial reports."""
    features_dir, steps = settings.features_dir, settings.steps_per_epoch
    probing = probe_epochs(setup, plan)
    seen = plan.epochs * steps * plan.batch_size if steps else None
    if (features_dir is None or worker.world > 1 or probing <= done or plan.ema_decay
            or (seen is not None and seen < int(settings.train_rows or 0))):
        return None
    head = probe_module(unwrap(setup.model), list(setup.head_params))
    if head is None:
        return None
    return CachedProbe(setup, plan, head, worker.dataset("train"), worker.dataset("val"),
                       cache_location(features_dir, plan), device, steps)


def probe_epochs(setup: TrialSetup, plan: TrialPlan) -> int:
    """The epochs 1..n of a trial that train only the head."""
    return plan.epochs if setup.unfreeze_depth == 0 else plan.lp_ft_epochs


class CachedProbe:
    """Head-only epochs over cached features, with the streaming loop's statistics."""

    def __init__(self, setup: TrialSetup, plan: TrialPlan, head: str, train: Any, val: Any,
                 location: str, device: torch.device, steps: int | None) -> None:
        self.setup, self.plan, self.device, self.steps = setup, plan, device, steps
        self.head = setup.model.get_submodule(head)
        started = time.time()
        self.cache = "hit" if storage.exists(location) else "built"
        if self.cache == "hit":
            arrays = read_arrays(location)
        else:
            arrays = _extract(setup, plan, self.head, train, val)
            write_arrays(location, arrays)
        self.seconds = time.time() - started
        self.epochs = probe_epochs(setup, plan)
        """Epochs 1..epochs train on the cache; later ones (LP-FT) stream."""
        self.views = torch.from_numpy(arrays["train"])  # (views, examples, ...)
        self.labels = torch.from_numpy(arrays["train_labels"])
        self.val = torch.from_numpy(arrays["val"])
        self.val_labels = torch.from_numpy(arrays["val_labels"])
        self.val_keys: np.ndarray | None = arrays.get("val_keys")

    def train_epoch(self, epoch: int) -> EpochStats:
        """One epoch of the head: the same batch size, a fresh shuffle, a random view (flip)
        per example when the plan augments."""
        self.head.train()
        generator = torch.Generator().manual_seed(self.plan.seed * 1000 + epoch)
        order = self._order(epoch)
        stats = EpochStats()
        params = [p for p in self.head.parameters() if p.requires_grad]
        # Summed on the device, read once per epoch (as `train_epoch`): no per-step host sync.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        for start in range(0, len(order), self.plan.batch_size):
            index = order[start:start + self.plan.batch_size]
            if len(index) < 2:
                continue
            view = torch.randint(len(self.views), (len(index),), generator=generator)
            inputs = self.views[view, index].to(self.device)
            labels = self.labels[index].to(self.device)
            logits = self.head(inputs).float()
            loss = recipe.loss_fn(logits, labels, self.plan)
            self.setup.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.plan.grad_clip:
                nn.utils.clip_grad_norm_(params, self.plan.grad_clip)
            self.setup.update(self.setup.model)
            loss_sum += loss.detach() * len(index)
            correct += (logits.detach().argmax(1) == labels).sum()
            stats.examples += len(index)
        stats.loss_sum = check_finite(loss_sum, epoch, None)
        stats.correct = float(correct)
        return stats

    def evaluate(self, keep: Collector | None = None) -> torch.Tensor:
        """The counts of `classification.count_batch` over the whole validation split;
        `keep` also receives its keys and logits."""
        if keep is not None:
            if self.val_keys is None:
                keep.complete = False
            else:
                keep.keys.extend(str(k) for k in self.val_keys.tolist())
        return self._evaluate(self.val, self.val_labels, keep)

    def evaluate_train(self) -> torch.Tensor:
        """The same over the loop's fixed training sample (its first `TRAIN_SAMPLE` rows,
        unflipped), as the streaming epochs measure it."""
        return self._evaluate(self.views[0, :TRAIN_SAMPLE], self.labels[:TRAIN_SAMPLE])

    @torch.inference_mode()
    def _evaluate(self, features: torch.Tensor, targets: torch.Tensor,
                  keep: Collector | None = None) -> torch.Tensor:
        self.head.eval()
        counts = new_counts(self.plan.num_classes, self.device)
        for start in range(0, len(features), 256):
            logits = self.head(features[start:start + 256].to(self.device)).float()
            labels = targets[start:start + 256].to(self.device)
            count_batch(counts, logits, labels)
            if keep is not None:
                keep.add(logits, labels)
        return counts

    def _order(self, epoch: int) -> torch.Tensor:
        """The examples of `epoch`: one shuffled pass, or with `steps` per epoch the next
        steps × batch_size examples of a stream of shuffled passes (the same on a resume)."""
        n = len(self.labels)
        if not self.steps:
            return torch.randperm(n, generator=torch.Generator().manual_seed(
                self.plan.seed * 100_003 + epoch))
        size = self.steps * self.plan.batch_size
        first, last = (epoch - 1) * size, epoch * size
        passes = [torch.randperm(n, generator=torch.Generator().manual_seed(
            self.plan.seed * 100_003 + p)) for p in range(first // n, (last - 1) // n + 1)]
        stream = torch.cat(passes)
        offset = first - (first // n) * n
        return stream[offset:offset + size]


@torch.inference_mode()
def _extract(setup: TrialSetup, plan: TrialPlan, head: nn.Module, train: Any, val: Any
             ) -> dict[str, np.ndarray]:
    """The head's inputs for every example of both splits, backbone in eval mode (for
    training: one array per view, original and flipped)."""
    model, task = setup.model, setup.task
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].cpu()))
    arrays: dict[str, np.ndarray] = {}
    try:
        for split, data in (("train", train), ("val", val)):
            flip = split == "train" and task.flips(plan)
            views: list[list[torch.Tensor]] = [[] for _ in range(2 if flip else 1)]
            labels = []
            keys: list[str] | None = [] if split == "val" else None
            for batch in data.iter_batches(batch_size=EXTRACT_BATCH, batch_format="pyarrow"):
                if keys is not None and "key" not in batch.column_names:
                    keys = None  # prepared before rows had keys: no predictions kept
                if keys is not None:
                    keys.extend(str(k) for k in batch.column("key").to_pylist())
                inputs, target = task.collate(batch, plan, next(head.parameters()).device)
                for number, view in enumerate(views):
                    captured.clear()
                    task.forward(model, inputs.flip(3) if number else inputs)
                    view.append(captured[0].float())
                labels.append(target.cpu())
            stacked = [torch.cat(v) for v in views]
            arrays[split] = (torch.stack(stacked) if split == "train" else stacked[0]).numpy()
            arrays[f"{split}_labels"] = torch.cat(labels).numpy()
            if keys is not None:
                arrays["val_keys"] = np.array(keys, dtype=str)
    finally:
        hook.remove()
        model.train(was_training)
    return arrays

