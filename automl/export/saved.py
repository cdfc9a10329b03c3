"""Rebuild a saved model: the plan's architecture from a checkpoint or export directory, and
its safetensors weights loaded strictly. No Ray, no pickles."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from automl.errors import AutomlError
from automl.tasks import get_task
from automl.trial.plan import TrialPlan


def rebuild(plan: TrialPlan, directory: Path) -> nn.Module:
    """The plan's architecture with a fresh head and no pretrained download (the weights are
    loaded next), from what a checkpoint or export directory holds; eval mode."""
    model, _ = get_task(plan.task).build_model(plan, saved=directory)
    return model.eval()


def load_weights(model: nn.Module, weights: Path, allow_missing_bn_counters: bool = False
                 ) -> None:
    """Load a safetensors file into `model`; every key must match (AutomlError naming the
    file otherwise). Checkpoints of partly frozen models may lack BatchNorm counters."""
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if allow_missing_bn_counters:
        # Frozen BatchNorms (FrozenBatchNorm2d) carry no num_batches_tracked.
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise AutomlError(f"{weights} does not match its model: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
