"""Backbone registry: build a model with a fresh head and describe its layer groups.

Imports are lazy so that modules needing only the registry (config validation, the Tune
trial driver) do not import timm or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from automl.backbones.groups import LayerGroups


def build_model(
    task: str, name: str, weights: str, num_classes: int, **options: Any
) -> tuple[nn.Module, LayerGroups]:
    """Create a backbone + new `num_classes` head with its weights, and its layer groups."""
    from automl.backbones.groups import LayerGroups

    if task == "image":
        from automl.backbones.timm_backbone import create_timm_model, timm_layer_groups

        model = create_timm_model(name, weights, num_classes)
        groups, head = timm_layer_groups(model)
        return model, LayerGroups(groups, head)
    from automl.backbones.hf_backbone import create_text_model

    text_model = create_text_model(name, weights, num_classes, **options)
    return text_model, text_model.layer_groups()


_LAZY = {
    "LayerGroups": "automl.backbones.groups",
    "apply_unfreeze": "automl.backbones.groups",
    "count_params": "automl.backbones.groups",
    "param_groups": "automl.backbones.groups",
    "PACKAGED": "automl.backbones.registry",
    "check_backbone": "automl.backbones.registry",
    "hub_reachable": "automl.backbones.registry",
}

__all__ = ["build_model", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'automl.backbones' has no attribute {name!r}")
