"""The fine-tuning recipe of a trial beyond its optimizer: the per-step LR schedule, label
smoothing, mixup/cutmix (timm's `Mixup`) and the EMA of weights (timm's `ModelEmaV3`).

The schedule is a multiplier on every parameter group's own LR (torch's `LambdaLR`), so
layer-wise LR decay keeps its ratios and `min_lr_ratio` is a floor relative to each group;
timm's schedulers take one absolute `lr_min` for all groups, which would lift the deepest
groups of a layer-decayed model above their LR.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from automl.trial.plan import TrialPlan


def lr_factor(step: int, total: int, warmup: float, schedule: str, min_ratio: float) -> float:
    """The LR multiplier before optimizer step `step` (0-based) of `total` planned steps:
    linear warm-up from 0 over `warmup` × total steps, then `schedule` down to `min_ratio`."""
    warm = round(warmup * total)
    if step < warm:
        return (step + 1) / (warm + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warm) / max(1, total - warm))
    shape = (0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine"
             else 1.0 - progress)
    return min_ratio + (1.0 - min_ratio) * shape


def make_scheduler(optimizer: torch.optim.Optimizer, plan: TrialPlan, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule spanning the plan's planned epochs (ASHA's rungs then compare
    trials on the schedule they were given, and a refit stopped early keeps it)."""
    total = max(1, plan.planned_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        return lr_factor(step, total, plan.warmup, plan.lr_schedule, plan.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_ema(model: nn.Module, plan: TrialPlan) -> Any:
    """timm's ModelEmaV3 of `model` when the plan asks for one (else None). Its decay warms up
    (timm's `use_warmup`), so a short fine-tune's average is not stuck at the start."""
    if not plan.ema_decay:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=plan.ema_decay, use_warmup=True)


def make_mixup(plan: TrialPlan) -> Any:
    """timm's Mixup (mixup and/or cutmix, label smoothing folded into its soft targets), or
    None. It draws from NumPy's global generator, which `mix` seeds per step."""
    if not (plan.mixup or plan.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=plan.mixup, cutmix_alpha=plan.cutmix,
                 label_smoothing=plan.label_smoothing, num_classes=plan.num_classes)


def mix(mixup: Any, inputs: torch.Tensor, labels: torch.Tensor, seed: int
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed inputs and soft targets, reproducible from `seed`; an odd last row is dropped
    (timm's Mixup pairs each row with its mirror in the batch)."""
    if len(inputs) % 2:
        inputs, labels = inputs[:-1], labels[:-1]
    np.random.seed(seed % 2**32)
    mixed, targets = mixup(inputs, labels)
    return mixed, targets


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, plan: TrialPlan) -> torch.Tensor:
    """Cross-entropy with the plan's label smoothing; soft targets (mixup) as they come.
    With class weights, each example counts by its (target-weighted) class weight and the
    mean divides by the summed weights (PyTorch's weighted mean, extended to soft targets)."""
    weight = (None if plan.class_weights is None
              else torch.tensor(plan.class_weights, dtype=logits.dtype, device=logits.device))
    if targets.dim() == 2:
        per_example = torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1)
        if weight is None:
            return per_example.mean()
        example_weight = targets @ weight
        return (per_example * example_weight).sum() / example_weight.sum()
    return F.cross_entropy(logits, targets, weight=weight, label_smoothing=plan.label_smoothing)


def hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices of hard or soft (mixed) targets, for training accuracy."""
    return targets.argmax(1) if targets.dim() == 2 else targets
