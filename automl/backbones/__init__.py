"""Backbones: timm and Hugging Face models with a fresh head, their layer groups, and the
registry of where weights come from. Each task (`automl.tasks`) builds its own models.

Imports are lazy so that modules needing only the registry (config validation, the Tune
trial driver) do not import timm or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LayerGroups": "automl.backbones.groups",
    "apply_unfreeze": "automl.backbones.groups",
    "count_params": "automl.backbones.groups",
    "param_groups": "automl.backbones.groups",
    "PACKAGED": "automl.backbones.registry",
    "check_weights": "automl.backbones.registry",
    "hub_reachable": "automl.backbones.registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'automl.backbones' has no attribute {name!r}")
