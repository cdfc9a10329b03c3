"""One trial's fine-tune steps: setup, a training epoch, evaluation — plain PyTorch.

`setup_trial`, `train_epoch` and `evaluate` run over any iterable of Arrow batches, so the
benchmark's bare loop and the tests run exactly the code the search runs; in a trial
`automl.trial.loop` drives them over this worker's shard of the prepared Ray Dataset.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from automl.backbones.groups import apply_unfreeze, count_params, param_groups
from automl.errors import TrialFailed
from automl.tasks import Task, get_task
from automl.tasks.base import to_device
from automl.trial import recipe
from automl.trial.checkpoints import unwrap
from automl.trial.classification import count_batch, new_counts
from automl.trial.decode import Decoder
from automl.trial.plan import TrialPlan
from automl.trial.predictions import Collector

TRAIN_SAMPLE = 256
"""Training examples evaluated each epoch (eval transform) for the board's train accuracy
and its train − validation gap (SE ≤ 3 points; it flags gaps above 10). 500 made the
demo's evaluation 2.2× slower: its validation split holds 400."""
FINITE_CHECK_STEPS = 50
"""Steps between checks that the training loss is finite (each check syncs with the GPU)."""


@dataclass
class TrialSetup:
    """A model ready to train, with its optimizer, task and parameter counts."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: Task
    unfreeze_depth: int
    layer_groups: int
    trainable_params: int
    total_params: int
    head_params: tuple[str, ...] = ()
    decoder: Decoder = field(default_factory=Decoder)
    """Decodes/augments batches on the host, inline or in worker processes."""
    scheduler: Any = None
    """The per-step LR schedule (`recipe.make_scheduler`), stepped after every update."""
    ema: Any = None
    """timm's ModelEmaV3 when the plan averages weights: then it is the trial's model."""
    mixup: Any = None

    def update(self, model: nn.Module) -> None:
        """After an optimizer step: advance the schedule and the weight average."""
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(unwrap(model), step=self.scheduler.last_epoch
                            if self.scheduler is not None else None)

    @property
    def evaluated(self) -> nn.Module:
        """The model evaluated, checkpointed and exported: the EMA when there is one."""
        return self.ema.module if self.ema is not None else unwrap(self.model)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: same plan + seed → same result on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fast_layout(model: nn.Module) -> nn.Module:
    """The model with 4-D weights channels-last (timm's `--channels-last`): convolutions run
    1.4× faster on a CPU (oneDNN) and use tensor cores under AMP on a GPU; the inputs follow
    the weights' layout, and models without 4-D weights are unchanged."""
    return model.to(memory_format=torch.channels_last)


def setup_trial(plan: TrialPlan, steps_per_epoch: int = 1, decode_workers: int = 0
                ) -> TrialSetup:
    """Build model (weights loaded, last k groups unfrozen), optimizer, the LR schedule over
    `steps_per_epoch` × the planned epochs, the EMA and mixup when the plan uses them, and
    the batch decoder (`decode_workers` processes; 0: inline)."""
    seed_everything(plan.seed)
    task = get_task(plan.task)
    model, layers = task.build_model(plan)
    model = fast_layout(model)
    _, total = count_params(model)
    depth = layers.depth_for(plan.unfreeze_fraction)
    apply_unfreeze(model, layers, depth)
    groups = param_groups(model, layers, plan.head_lr, plan.backbone_lr or 0.0,
                          plan.layer_decay, plan.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    trainable, _ = count_params(model)
    return TrialSetup(model, optimizer, task, depth, len(layers.groups), trainable, total,
                      tuple(layers.head), Decoder(decode_workers),
                      recipe.make_scheduler(optimizer, plan, steps_per_epoch),
                      recipe.make_ema(model, plan), recipe.make_mixup(plan))


def train_epoch(
    setup: TrialSetup, plan: TrialPlan, epoch: int, device: torch.device,
    batches: Iterable[pa.Table], rank: int = 0,
) -> EpochStats:
    """One epoch over this worker's batches (all ranks get equally many: DDP needs equal
    step counts); a batch of one row is skipped (BatchNorm cannot train on it).

    The loss stays on the device and is checked every `FINITE_CHECK_STEPS` steps: a `.item()`
    per step would make a GPU wait for the host every step."""
    model, task = setup.model, setup.task
    model.train()
    frozen = _set_lp_ft_phase(setup, linear_probe=epoch <= plan.lp_ft_epochs)
    stats = EpochStats()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    waited = time.perf_counter()
    seeded = ((batch, stream_seed(plan.seed, epoch, step, rank))
              for step, batch in enumerate(batches) if batch.num_rows > 1)
    for step, (host, labels, seed) in enumerate(setup.decoder.batches(plan, seeded)):
        assert seed is not None
        inputs = task.to_inputs(host, plan, device, seed)
        labels = to_device(labels, device)
        targets = labels
        if setup.mixup is not None:
            inputs, targets = recipe.mix(setup.mixup, inputs, labels, seed)
            labels = recipe.hard_labels(targets)
        stats.data_s += time.perf_counter() - waited
        with _autocast(plan, device):
            logits = task.forward(model, inputs)
            loss = recipe.loss_fn(logits.float(), targets, plan)
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for p in frozen:
            p.grad = None  # AdamW skips a parameter without a gradient: no moments, no step
        if plan.grad_clip:
            nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], plan.grad_clip
            )
        setup.update(model)
        loss_sum += loss.detach() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
        stats.examples += len(labels)
        if step % FINITE_CHECK_STEPS == 0:
            check_finite(loss_sum, epoch, step)
        waited = time.perf_counter()
    stats.loss_sum = check_finite(loss_sum, epoch, None)
    stats.correct = float(correct)
    return stats


def stream_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The seed of one training batch's augmentation (its examples add their row): the same
    trial seed, epoch, step and DDP rank give the same draws after a restart, and ranks draw
    apart (the same step on two ranks holds other images)."""
    return ((seed * 1_000_003 + epoch * 10_007 + step) * 4_099 + rank * 1_000_000_007) % 2**62


def _autocast(plan: TrialPlan, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast when the plan asks for it (CUDA, or CPU for tests), else nothing."""
    if plan.precision == "bf16":
        return torch.autocast(device.type, torch.bfloat16)
    return contextlib.nullcontext()


def check_finite(loss_sum: torch.Tensor, epoch: int, step: int | None) -> float:
    """`loss_sum` as a float (one host sync); TrialFailed naming the epoch (and step) and
    what to change when it is NaN or infinite. Shared by streamed and cached-feature epochs."""
    value = float(loss_sum)
    if not math.isfinite(value):
        where = f"epoch {epoch}" + (f" step {step}" if step is not None else "")
        raise TrialFailed(f"training loss became {value} at {where}; lower head_lr/backbone_lr "
                          "or keep train.grad_clip set")
    return value


@dataclass
class EpochStats:
    """What one training epoch did."""

    loss_sum: float = 0.0
    examples: int = 0
    correct: float = 0.0
    """Training examples predicted right, under augmentation, as the weights moved."""
    data_s: float = 0.0
    """Seconds spent waiting for and collating batches (the rest is compute)."""

    @property
    def loss(self) -> float:
        """Mean training loss."""
        return self.loss_sum / max(self.examples, 1)


def _set_lp_ft_phase(setup: TrialSetup, linear_probe: bool) -> list[nn.Parameter]:
    """LP-FT: during the first `lp_ft_epochs` only the head learns. Returns the backbone
    parameters whose gradients the step must drop.

    Without DDP the backbone stops requiring grad, so backward stops at the head. DDP fixes
    its set of trained parameters at wrap time, so there backward still computes backbone
    gradients; dropping them before `optimizer.step()` keeps AdamW from touching those
    parameters (a zero LR alone would still build up their moments and step counts, and 1
    and 2 workers would train differently).
    """
    can_toggle = not isinstance(setup.model, nn.parallel.DistributedDataParallel)
    dropped: list[nn.Parameter] = []
    for group in setup.optimizer.param_groups:
        if group["name"] == "head":
            continue
        for p in group["params"]:
            if can_toggle:
                p.requires_grad_(not linear_probe)
            elif linear_probe:
                dropped.append(p)
    return dropped


@torch.inference_mode()
def evaluate(
    setup: TrialSetup, plan: TrialPlan, device: torch.device, batches: Iterable[pa.Table],
    keep: Collector | None = None,
) -> torch.Tensor:
    """The counts of `classification.count_batch` (loss, examples, confusion) over the given
    validation batches, on `device`; `keep` also receives every batch's keys and logits.

    Runs the unwrapped module: DDP's forward syncs buffers with the other ranks, which may
    evaluate a different number of batches."""
    model, task = setup.evaluated, setup.task
    model.eval()
    counts = new_counts(plan.num_classes, device)
    for host, labels, _ in setup.decoder.batches(plan, _noting_keys(batches, keep)):
        inputs, labels = task.to_inputs(host, plan, device), to_device(labels, device)
        with _autocast(plan, device):
            logits = task.forward(model, inputs).float()
        count_batch(counts, logits, labels)
        if keep is not None:
            keep.add(logits, labels)
    return counts


def _noting_keys(batches: Iterable[pa.Table], keep: Collector | None
                 ) -> Iterator[tuple[pa.Table, None]]:
    """The decoder's items (no augmentation seed); `keep` notes each batch's keys in order."""
    for batch in batches:
        if keep is not None:
            keep.add_keys(batch)
        yield batch, None


def sum_over_ranks(totals: torch.Tensor, world: int) -> list[float]:
    """All-reduce a tensor of counts in place and read it once.

    The tensor stays on the worker's device: NCCL (Ray's backend for GPU workers) reduces only
    CUDA tensors, gloo only CPU ones."""
    if world > 1:
        torch.distributed.all_reduce(totals)
    return [float(v) for v in totals.tolist()]
