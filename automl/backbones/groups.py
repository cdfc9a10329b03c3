"""Unfreeze the last k layer groups and build optimizer param groups with per-group LRs.

Shared by timm and Hugging Face backbones: both describe themselves as ordered groups of
parameter names (bottom → top) plus the head's parameter names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timm.utils.model import freeze
from torch import nn


@dataclass
class LayerGroups:
    """A model's trainable structure: backbone groups bottom → top, and the head."""

    groups: list[list[str]]
    head: list[str]

    def depth_for(self, fraction: float) -> int:
        """Number of trailing groups to train for an unfreeze fraction in [0, 1]."""
        return round(fraction * len(self.groups))


def apply_unfreeze(model: nn.Module, layers: LayerGroups, depth: int) -> None:
    """Freeze every backbone group below the last `depth`; frozen BatchNorms stay in eval mode.

    timm's `freeze` turns BatchNorm layers of frozen modules into `FrozenBatchNorm2d`, so their
    running statistics never move, whatever `model.train()` says.
    """
    if not 0 <= depth <= len(layers.groups):
        raise ValueError(f"unfreeze depth must be in [0, {len(layers.groups)}], got {depth}")
    frozen = [n for g in layers.groups[: len(layers.groups) - depth] for n in g]
    params = dict(model.named_parameters())
    modules = sorted({n.rpartition(".")[0] for n in frozen} - {""})
    # A frozen module may hold a trainable child (rare); only freeze whole modules whose
    # parameters are all frozen, then catch remaining frozen parameters one by one.
    frozen_set = set(frozen)
    whole = [m for m in modules if _all_params_in(model.get_submodule(m), m, frozen_set)]
    if whole:
        freeze(model, _outermost(whole))
    for name in frozen:
        params[name].requires_grad_(False)


def _all_params_in(module: nn.Module, prefix: str, names: set[str]) -> bool:
    return all(f"{prefix}.{n}" in names for n, _ in module.named_parameters())


def _outermost(modules: list[str]) -> list[str]:
    kept: list[str] = []
    for m in sorted(modules):
        if not any(m.startswith(k + ".") for k in kept):
            kept.append(m)
    return kept


def param_groups(
    model: nn.Module,
    layers: LayerGroups,
    head_lr: float,
    backbone_lr: float,
    layer_decay: float = 1.0,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer param groups: the head at `head_lr`, the top trainable backbone group at
    `backbone_lr`, each group below it `layer_decay` times the one above.

    Biases and norm weights (1-D tensors) get no weight decay, as in timm's optim factory.
    """
    params = dict(model.named_parameters())
    out: list[dict[str, Any]] = []

    def add(names: list[str], lr: float, tag: str) -> None:
        live = [p for n in names if (p := params.get(n)) is not None and p.requires_grad]
        decay = [p for p in live if p.ndim > 1]
        no_decay = [p for p in live if p.ndim <= 1]
        for group, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if group:
                out.append({"params": group, "lr": lr, "weight_decay": wd, "name": tag})

    add(layers.head, head_lr, "head")
    for distance, names in enumerate(reversed(layers.groups)):
        add(names, backbone_lr * layer_decay**distance, f"backbone_{distance}")
    return out


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
