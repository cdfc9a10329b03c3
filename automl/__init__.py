"""automl: transfer-learning AutoML on Ray (Tune + Optuna TPE + ASHA over TorchTrainer trials).

The public API is imported lazily: Ray Train workers import `automl.trial.loop` and should
not pay for pandas, Optuna and Ray Tune, which only the driver needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_search": "automl.api",
    "validate": "automl.api",
    "leaderboard": "automl.api",
    "export": "automl.api",
    "report": "automl.api",
    "compare": "automl.api",
    "combine": "automl.api",
    "resume_search": "automl.api",
    "Constraints": "automl.runs.leaderboard",
    "SearchResult": "automl.api",
    "predict": "automl.export",
    "load": "automl.export",
    "ExportedModel": "automl.export",
    "load_exported": "automl.export",
    "AutomlError": "automl.errors",
    "BackboneError": "automl.errors",
    "ConfigError": "automl.errors",
    "DataError": "automl.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
