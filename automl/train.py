"""One trial's fine-tune: pure setup/epoch/eval helpers, and the Ray Train worker loop on top.

`setup_trial`, `train_epoch` and `evaluate` are plain PyTorch, so the benchmark's bare loop
and the tests run exactly the code the search runs, without Ray.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.backbones import build_model
from automl.backbones.groups import apply_unfreeze, count_params, param_groups
from automl.errors import TrialFailed
from automl.plan import WEIGHTS_FILE, TrialPlan
from automl.tasks import TaskData, make_task_data


@dataclass
class TrialSetup:
    """A model ready to train, with its optimizer, data and parameter counts."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: TaskData
    unfreeze_depth: int
    layer_groups: int
    trainable_params: int
    total_params: int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: same plan + seed → same result on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_trial(plan: TrialPlan, payload: dict[str, Any]) -> TrialSetup:
    """Build model (weights loaded, last k groups unfrozen), optimizer and tensors."""
    seed_everything(plan.seed)
    model, layers = build_model(plan.task, plan.backbone, plan.weights, plan.num_classes,
                                pooling=plan.pooling, **plan.preprocessing)
    _, total = count_params(model)
    depth = layers.depth_for(plan.unfreeze_fraction)
    apply_unfreeze(model, layers, depth)
    groups = param_groups(model, layers, plan.head_lr, plan.backbone_lr or 0.0,
                          plan.layer_decay, plan.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    trainable, _ = count_params(model)
    data = make_task_data(plan, payload)
    return TrialSetup(model, optimizer, data, depth, len(layers.groups), trainable, total)


def batches(n: int, batch_size: int, order: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Index batches over n examples, in `order` (a permutation) or sequentially."""
    index = order if order is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield index[start:start + batch_size]


def train_epoch(
    setup: TrialSetup,
    plan: TrialPlan,
    epoch: int,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
) -> float:
    """One epoch over this worker's shard of the training set; returns the mean loss."""
    model, data = setup.model, setup.data
    model.train()
    _set_lp_ft_phase(setup, linear_probe=epoch <= plan.lp_ft_epochs)
    rank, world = shard
    generator = torch.Generator().manual_seed(plan.seed * 1000 + epoch)
    # Every rank gets the same number of examples (DDP needs equal step counts), and a last
    # batch of one is dropped (BatchNorm cannot train on it).
    per_rank = data.num_train // world
    order = torch.randperm(data.num_train, generator=generator)[rank::world][:per_rank]
    total, count = 0.0, 0
    for step, index in enumerate(batches(len(order), plan.batch_size, order)):
        if len(index) < 2:
            continue
        inputs, labels = data.train_batch(index, device, generator)
        with torch.autocast(device.type, torch.bfloat16, enabled=plan.precision == "bf16"):
            logits = data.forward(model, inputs)
            loss = F.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):
            raise TrialFailed(
                f"training loss became {loss.item()} at epoch {epoch} step {step}; "
                "lower head_lr/backbone_lr or keep train.grad_clip set"
            )
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if plan.grad_clip:
            nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], plan.grad_clip
            )
        setup.optimizer.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / max(count, 1)


def _set_lp_ft_phase(setup: TrialSetup, linear_probe: bool) -> None:
    """LP-FT: during the first `lp_ft_epochs` only the head learns (backbone LR 0).

    Without DDP the backbone also stops requiring grad, so backward stops at the head; DDP
    fixes its set of trained parameters at wrap time, so there the LR alone does it.
    """
    can_toggle = not isinstance(setup.model, nn.parallel.DistributedDataParallel)
    for group in setup.optimizer.param_groups:
        backbone = group["name"] != "head"
        group["lr"] = 0.0 if linear_probe and backbone else group["base_lr"]
        if backbone and can_toggle:
            for p in group["params"]:
                p.requires_grad_(not linear_probe)


@torch.inference_mode()
def evaluate(
    setup: TrialSetup, plan: TrialPlan, device: torch.device, shard: tuple[int, int] = (0, 1)
) -> tuple[int, int, float]:
    """(correct, count, summed loss) over this worker's shard of the validation set."""
    model, data = setup.model, setup.data
    model.eval()
    rank, world = shard
    index = torch.arange(data.num_val)[rank::world]
    correct, loss_sum = 0, 0.0
    for batch in batches(len(index), max(plan.batch_size, 64)):
        inputs, labels = data.val_batch(index[batch], device)
        with torch.autocast(device.type, torch.bfloat16, enabled=plan.precision == "bf16"):
            logits = data.forward(model, inputs).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(1) == labels).sum())
    return correct, len(index), loss_sum


def save_checkpoint(model: nn.Module, plan: TrialPlan, directory: Path, **metrics: Any) -> None:
    """Weights as safetensors (no pickle) plus the plan that rebuilds them."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    plan.save(directory, **metrics)
    inner = _unwrap(model)
    save_hf = getattr(inner, "save_hf", None)
    if callable(save_hf):
        save_hf(directory, plan.preprocessing["source"])


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)
    assert isinstance(inner, nn.Module)
    return inner


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: fine-tune one plan, report every epoch, checkpoint on improvement."""
    import ray
    import ray.train
    import ray.train.torch

    t_trial_start = float(config["trial_start"])
    ctx = ray.train.get_context()
    shard = (ctx.get_world_rank(), ctx.get_world_size())
    torch.set_num_threads(max(1, int(config["threads"])))
    plan = TrialPlan.from_dict(config["plan"])
    device = ray.train.torch.get_device()

    t0 = time.time()
    payload = ray.get(config["data"][0])
    setup = setup_trial(plan, payload)
    setup.model = ray.train.torch.prepare_model(setup.model)
    timings = {
        "ray_startup_s": t0 - t_trial_start,  # driver, controller, worker group, imports
        "setup_s": time.time() - t0,  # weights, freezing, optimizer, data tensors
        "startup_s": time.time() - t_trial_start,
    }
    best = -1.0
    for epoch in range(1, plan.epochs + 1):
        t = time.time()
        train_loss = train_epoch(setup, plan, epoch, device, shard)
        timings["train_s"] = timings.get("train_s", 0.0) + time.time() - t
        t = time.time()
        counts = torch.tensor(evaluate(setup, plan, device, shard), dtype=torch.float64)
        if shard[1] > 1:
            torch.distributed.all_reduce(counts)
        correct, count, loss_sum = counts.tolist()
        timings["eval_s"] = timings.get("eval_s", 0.0) + time.time() - t
        metrics = {
            "epoch": epoch,
            "val_accuracy": correct / count,
            "val_loss": loss_sum / count,
            "val_examples": int(count),  # all ranks' shards, summed: the whole validation set
            "train_loss": train_loss,
            "unfreeze_depth": setup.unfreeze_depth,
            "layer_groups": setup.layer_groups,
            "trainable_params": setup.trainable_params,
            "total_params": setup.total_params,
            **timings,
        }
        improved = metrics["val_accuracy"] > best
        best = max(best, metrics["val_accuracy"])
        t = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if improved and shard[0] == 0:
                save_checkpoint(setup.model, plan, Path(tmp), **metrics)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        timings["checkpoint_s"] = timings.get("checkpoint_s", 0.0) + time.time() - t
