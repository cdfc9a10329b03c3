"""Backbone registry: build a model with a fresh head and describe its layer groups."""

from __future__ import annotations

from typing import Any

from torch import nn

from automl.backbones.groups import LayerGroups, apply_unfreeze, count_params, param_groups
from automl.backbones.registry import PACKAGED, check_backbone, hub_reachable


def build_model(
    task: str, name: str, weights: str, num_classes: int, **options: Any
) -> tuple[nn.Module, LayerGroups]:
    """Create a backbone + new `num_classes` head with its weights, and its layer groups."""
    if task == "image":
        from automl.backbones.timm_backbone import create_timm_model, timm_layer_groups

        model = create_timm_model(name, weights, num_classes)
        groups, head = timm_layer_groups(model)
        return model, LayerGroups(groups, head)
    from automl.backbones.hf_backbone import create_text_model

    model = create_text_model(name, weights, num_classes, **options)
    return model, model.layer_groups()


__all__ = [
    "PACKAGED",
    "LayerGroups",
    "apply_unfreeze",
    "build_model",
    "check_backbone",
    "count_params",
    "hub_reachable",
    "param_groups",
]
