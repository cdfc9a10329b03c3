"""One trial's fine-tune: pure setup/epoch/eval helpers, and the training loop on top.

`setup_trial`, `train_epoch` and `evaluate` are plain PyTorch over any iterable of Arrow
batches, so the benchmark's bare loop and the tests run exactly the code the search runs;
in a trial the batches stream from this worker's shard of the prepared Ray Dataset.
`train_loop` runs in a Ray Train worker or in the Tune trial's own process (`automl.worker`);
frozen epochs may train on cached features instead (`automl.probe`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from automl.backbones.groups import apply_unfreeze, count_params, param_groups
from automl.checkpoints import (
    TrainState,
    load_train_state,
    save_checkpoint,
    save_train_state,
    unwrap,
)
from automl.errors import TrialFailed
from automl.history import OUT_OF_TIME
from automl.measure import latency_ms, peak_memory_mb
from automl.plan import TrialPlan
from automl.prepared import EpochBatches
from automl.probe import cached_probe
from automl.tasks import Task, get_task
from automl.worker import Worker

FINITE_CHECK_STEPS = 50
"""Steps between checks that the training loss is finite (each check syncs with the GPU)."""
SHUFFLE_BATCHES = 16
"""Local shuffle buffer, in batches: rows are mixed within this window on top of the global
shuffle done once at preparation."""


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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: same plan + seed → same result on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_trial(plan: TrialPlan) -> TrialSetup:
    """Build model (weights loaded, last k groups unfrozen) and optimizer."""
    seed_everything(plan.seed)
    task = get_task(plan.task)
    model, layers = task.build_model(plan)
    _, total = count_params(model)
    depth = layers.depth_for(plan.unfreeze_fraction)
    apply_unfreeze(model, layers, depth)
    groups = param_groups(model, layers, plan.head_lr, plan.backbone_lr or 0.0,
                          plan.layer_decay, plan.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    trainable, _ = count_params(model)
    return TrialSetup(model, optimizer, task, depth, len(layers.groups), trainable, total,
                      tuple(layers.head))


def train_epoch(
    setup: TrialSetup, plan: TrialPlan, epoch: int, device: torch.device,
    batches: Iterable[pa.Table],
) -> EpochStats:
    """One epoch over this worker's batches (all ranks get equally many: DDP needs equal
    step counts); a batch of one row is skipped (BatchNorm cannot train on it).

    The loss stays on the device and is checked every `FINITE_CHECK_STEPS` steps: a `.item()`
    per step would make a GPU wait for the host every step."""
    model, task = setup.model, setup.task
    model.train()
    frozen = _set_lp_ft_phase(setup, linear_probe=epoch <= plan.lp_ft_epochs)
    generator = torch.Generator().manual_seed(plan.seed * 1000 + epoch)
    stats = EpochStats()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    waited = time.perf_counter()
    for step, batch in enumerate(batches):
        if batch.num_rows < 2:
            continue
        inputs, labels = task.collate(batch, plan, device, generator)
        stats.data_s += time.perf_counter() - waited
        with _autocast(plan, device):
            logits = task.forward(model, inputs)
            loss = F.cross_entropy(logits.float(), labels)
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for p in frozen:
            p.grad = None  # AdamW skips a parameter without a gradient: no moments, no step
        if plan.grad_clip:
            nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], plan.grad_clip
            )
        setup.optimizer.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
        stats.examples += len(labels)
        if step % FINITE_CHECK_STEPS == 0:
            check_finite(loss_sum, epoch, step)
        waited = time.perf_counter()
    stats.loss_sum = check_finite(loss_sum, epoch, None)
    stats.correct = float(correct)
    return stats


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
    setup: TrialSetup, plan: TrialPlan, device: torch.device, batches: Iterable[pa.Table]
) -> torch.Tensor:
    """(correct, count, summed loss) over the given validation batches, on `device`.

    Runs the unwrapped module: DDP's forward syncs buffers with the other ranks, which may
    evaluate a different number of batches."""
    model, task = unwrap(setup.model), setup.task
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # correct, count, loss sum
    for batch in batches:
        inputs, labels = task.collate(batch, plan, device)
        with _autocast(plan, device):
            logits = task.forward(model, inputs).float()
        totals[0] += (logits.argmax(1) == labels).sum()
        totals[1] += len(labels)
        totals[2] += F.cross_entropy(logits, labels, reduction="sum")
    return totals


def sum_over_ranks(totals: torch.Tensor, world: int) -> list[float]:
    """All-reduce a tensor of counts in place and read it once.

    The tensor stays on the worker's device: NCCL (Ray's backend for GPU workers) reduces only
    CUDA tensors, gloo only CPU ones."""
    if world > 1:
        torch.distributed.all_reduce(totals)
    return [float(v) for v in totals.tolist()]


def _shard_batches(worker: Worker, plan: TrialPlan, steps: int | None) -> EpochBatches:
    """This worker's training stream: its split of the dataset, reshuffled every pass."""
    shard = worker.dataset("train")

    def one_pass(number: int) -> Iterator[pa.Table]:
        return iter(shard.iter_batches(
            batch_size=plan.batch_size, batch_format="pyarrow",
            local_shuffle_buffer_size=SHUFFLE_BATCHES * plan.batch_size,
            local_shuffle_seed=plan.seed * 100_003 + number * 1_009 + worker.rank))

    return EpochBatches(one_pass, steps)


def _val_batches(worker: Worker, plan: TrialPlan) -> Iterator[pa.Table]:
    """Every rank reads the whole validation set and evaluates every world-th batch, so the
    summed counts cover each example exactly once (splitting would drop rows to equalize)."""
    stream = worker.dataset("val").iter_batches(
        batch_size=max(plan.batch_size, 64), batch_format="pyarrow")
    return (b for i, b in enumerate(stream) if i % worker.world == worker.rank)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker (a rank of a TorchTrainer): the trial loop through `ray.train`."""
    from automl.worker import RayTrainWorker

    train_loop(config, RayTrainWorker())


def train_loop(config: dict[str, Any], worker: Worker) -> None:
    """Fine-tune one plan, report and checkpoint every epoch; after a lost worker, node or
    trial process this resumes from the latest checkpoint, exactly where it stopped."""
    t_trial_start = float(config["trial_start"])
    rank, world = worker.rank, worker.world
    torch.set_num_threads(max(1, int(config["threads"])))
    plan = TrialPlan.from_dict(config["plan"])
    device = worker.device()

    t0 = time.time()
    setup = setup_trial(plan)
    train_batches = _shard_batches(worker, plan, config.get("steps_per_epoch"))
    state = TrainState()
    resumed = worker.latest_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as directory:
            state = load_train_state(Path(directory), setup.model, setup.optimizer)
        train_batches.resume(state.stream)
    setup.model = worker.prepare_model(setup.model)
    timings = {
        **state.timings,
        "ray_startup_s": t0 - t_trial_start,  # trial process, worker group, imports
        "setup_s": time.time() - t0,  # weights, freezing, optimizer (and resume)
        "startup_s": time.time() - t_trial_start,
        # Unix time of the first step: with the driver's start event, the whole startup
        # including what happened before this function ran (Tune's trial process).
        "first_step_at": state.timings.get("first_step_at", time.time()),
    }
    starts_before = worker.count_start() if rank == 0 else None
    state.restarts = max(state.restarts, starts_before or 0)
    placement: dict[str, Any] = {"worker_nodes": _worker_nodes(world),
                                 "restarts": state.restarts}
    probe = cached_probe(worker, setup, plan, config, device, state.epoch)
    if probe is not None:
        timings["features_s"] = probe.seconds
        placement["feature_cache"] = probe.cache
    costs: dict[str, float] = {}
    deadline = config.get("deadline")
    checkpoint_s = 0.0
    for epoch in range(state.epoch + 1, plan.epochs + 1):
        t = epoch_start = time.time()
        on_features = probe is not None and epoch <= probe.epochs
        if probe is not None and on_features:
            stats = probe.train_epoch(epoch)
        else:
            stats = train_epoch(setup, plan, epoch, device, train_batches.epoch())
        _add(timings, "train_s", time.time() - t)
        _add(timings, "data_s", stats.data_s)
        t = time.time()
        val = _val_batches(worker, plan)
        first = None
        if rank == 0 and "latency_ms" not in costs:
            first = next(val, None)  # the latency sample: a batch evaluate reads anyway
            val = itertools.chain([first] if first is not None else [], val)
        totals = (probe.evaluate() if probe is not None and on_features
                  else evaluate(setup, plan, device, val))
        # Another epoch like this one would end after the search's deadline: this is the last.
        late = (deadline is not None and epoch < plan.epochs
                and time.time() + (time.time() - epoch_start + checkpoint_s) > deadline)
        train_totals = torch.tensor([stats.correct, stats.examples, late], dtype=totals.dtype)
        correct, count, loss_sum, train_correct, train_count, late_ranks = sum_over_ranks(
            torch.cat([totals, train_totals.to(totals.device)]), world)
        _add(timings, "eval_s", time.time() - t)
        _add(timings, "train_samples", train_count)
        if first is not None:
            costs["latency_ms"] = _latency(setup, plan, device, first)
        metrics = {
            "epoch": epoch,
            "val_accuracy": correct / max(count, 1),
            "val_loss": loss_sum / max(count, 1),
            "val_examples": int(count),  # all ranks' shards, summed: the whole validation set
            "train_loss": stats.loss,
            "train_accuracy": train_correct / max(train_count, 1),
            "train_examples": stats.examples,  # this rank's, this epoch
            "samples_per_s": timings["train_samples"] / max(timings["train_s"], 1e-9),
            "peak_memory_mb": peak_memory_mb(device),
            **costs,
            "unfreeze_depth": setup.unfreeze_depth,
            "layer_groups": setup.layer_groups,
            "trainable_params": setup.trainable_params,
            "total_params": setup.total_params,
            **placement,
            **timings,
            **({OUT_OF_TIME: True} if late_ranks else {}),
        }
        state.epoch, state.best = epoch, max(state.best, correct / max(count, 1))
        state.stream, state.timings = train_batches.position(), timings
        t = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_checkpoint(setup.model, plan, Path(tmp), **metrics)
                save_train_state(Path(tmp), setup.optimizer, state)
            worker.report(metrics, Path(tmp) if rank == 0 else None)
        checkpoint_s = time.time() - t
        _add(timings, "checkpoint_s", checkpoint_s)
        if late_ranks:  # every rank agrees: the flag went through the all-reduce
            break


def _latency(setup: TrialSetup, plan: TrialPlan, device: torch.device, batch: pa.Table
             ) -> float:
    """Per-sample inference latency of the trial's model on a real validation example."""
    inputs, _ = setup.task.collate(batch, plan, device)
    return latency_ms(unwrap(setup.model), setup.task, inputs, device)


def _worker_nodes(world: int) -> str:
    """`IP/node-id` of every rank, in rank order (for the board: where the trial ran)."""
    import ray

    here = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    if world == 1:
        return here
    nodes: list[Any] = [None] * world
    torch.distributed.all_gather_object(nodes, here)
    return ",".join(str(n) for n in nodes)


def _add(timings: dict[str, float], key: str, seconds: float) -> None:
    timings[key] = timings.get(key, 0.0) + seconds
