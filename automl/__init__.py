"""automl: transfer-learning AutoML on Ray (Tune + Optuna TPE + ASHA over TorchTrainer trials)."""

from automl.api import SearchResult, export, leaderboard, run_search, validate
from automl.errors import AutomlError, BackboneError, ConfigError, DataError
from automl.export import load_exported, predict

__all__ = [
    "AutomlError",
    "BackboneError",
    "ConfigError",
    "DataError",
    "SearchResult",
    "export",
    "leaderboard",
    "load_exported",
    "predict",
    "run_search",
    "validate",
]
