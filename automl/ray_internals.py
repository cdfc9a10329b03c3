"""Every use of a private Ray module or attribute, in one place (bottom layer: no automl
imports), with the signatures each is used with.

automl is tested on Ray 2.60 (`pyproject.toml` pins `>=2.60,<2.61`). Ray has no public
hook for what these do: train a one-worker trial in its Tune trial process through Ray
Train's own checkpoint manager, refuse retries of deterministic trial errors, pass the
cluster address to Ray Train's controller, keep the raylet's benign warnings off the
terminal. Each getter returns None when Ray moved the thing, and the caller falls back to
Ray's default behaviour; `signature_problems` names what changed, and a test fails on it
(an upgrade fails a test instead of erroring every trial).
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

HEAD_NODE_RESOURCE = "node:__internal_head__"
"""The custom resource Ray puts on the head node only (pins a trial driver there)."""

# name → (what to import, attribute path, parameter names the caller passes)
_USED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "StorageContext": ("ray.train.v2._internal.execution.storage", "StorageContext",
                       ("storage_path", "experiment_dir_name")),
    "persist_current_checkpoint": ("ray.train.v2._internal.execution.storage",
                                   "StorageContext.persist_current_checkpoint",
                                   ("checkpoint", "checkpoint_dir_name")),
    "make_default_checkpoint_dir_name": ("ray.train.v2._internal.execution.storage",
                                         "StorageContext.make_default_checkpoint_dir_name", ()),
    "CheckpointManager": ("ray.train.v2._internal.execution.checkpoint.checkpoint_manager",
                          "CheckpointManager", ("checkpoint_config", "storage_context")),
    "register_checkpoint": ("ray.train.v2._internal.execution.checkpoint.checkpoint_manager",
                            "CheckpointManager.register_checkpoint", ("training_report",)),
    "_notify": ("ray.train.v2._internal.execution.checkpoint.checkpoint_manager",
                "CheckpointManager._notify", ()),
    "latest_checkpoint_result": (
        "ray.train.v2._internal.execution.checkpoint.checkpoint_manager",
        "CheckpointManager.latest_checkpoint_result", ()),
    "_TrainingReport": ("ray.train.v2._internal.execution.training_report", "_TrainingReport",
                        ("checkpoint", "metrics", "validation")),
    "RayTrainError": ("ray.train.v2._internal.exceptions", "RayTrainError", ()),
    "DefaultFailurePolicy": ("ray.train.v2._internal.execution.failure_handling",
                             "DefaultFailurePolicy.make_decision", ("training_failed_error",)),
    "FailureDecision": ("ray.train.v2._internal.execution.failure_handling",
                        "FailureDecision", ()),
    "create_failure_policy": ("ray.train.v2.api.data_parallel_trainer",
                              "create_failure_policy", ("failure_config",)),
    "ENV_VARS_TO_PROPAGATE": ("ray.train.v2._internal.constants", "ENV_VARS_TO_PROPAGATE", ()),
    "_process_trial_failure": ("ray.tune.execution.tune_controller",
                               "TuneController._process_trial_failure", ("trial", "exception")),
    "print_to_stdstream": ("ray._private.worker", "print_to_stdstream",
                           ("data", "ignore_prefix")),
    "Config.initialize": ("ray._raylet", "Config.initialize", ()),
    "reset_cache": ("ray._raylet", "AuthenticationTokenLoader.reset_cache", ()),
}


def _find(name: str) -> Any:
    module_name, attribute, _ = _USED[name]
    try:
        found: Any = __import__(module_name, fromlist=["_"])
    except ImportError:
        return None
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def signature_problems(names: tuple[str, ...] | None = None) -> list[str]:
    """What moved or changed shape since Ray 2.60, among `names` (default: all used)."""
    problems = []
    for name in names or tuple(_USED):
        found, (module_name, attribute, params) = _find(name), _USED[name]
        if found is None:
            problems.append(f"{module_name}.{attribute} is gone")
            continue
        if not params:
            continue
        try:
            accepted = inspect.signature(found).parameters
        except (TypeError, ValueError):
            continue  # a builtin: nothing to compare
        missing = [p for p in params if p not in accepted]
        if missing:
            problems.append(f"{module_name}.{attribute} no longer takes {missing}")
    return problems


_IN_PROCESS = ("StorageContext", "persist_current_checkpoint", "make_default_checkpoint_dir_name",
               "CheckpointManager", "register_checkpoint", "_notify", "latest_checkpoint_result",
               "_TrainingReport")


def in_process_supported() -> bool:
    """True when everything `InProcessWorker` calls exists with the arguments it passes."""
    return not signature_problems(_IN_PROCESS)


def storage_context() -> Any:
    """Ray Train's `StorageContext` class."""
    return _find("StorageContext")


def checkpoint_manager() -> Any:
    """Ray Train's `CheckpointManager` class."""
    return _find("CheckpointManager")


def training_report() -> Any:
    """Ray Train's `_TrainingReport` class (what a worker's report is registered as)."""
    return _find("_TrainingReport")


def ray_train_error() -> type[BaseException] | None:
    """Ray Train's base error class of its own (system) failures."""
    found = _find("RayTrainError")
    return found if isinstance(found, type) else None


def failure_policy() -> tuple[Any, Any, ModuleType] | None:
    """(DefaultFailurePolicy, FailureDecision, the module whose `create_failure_policy`
    TorchTrainers call), or None when Ray moved any of them."""
    if signature_problems(("DefaultFailurePolicy", "FailureDecision", "create_failure_policy")):
        return None
    from ray.train.v2._internal.execution.failure_handling import (
        DefaultFailurePolicy,
        FailureDecision,
    )
    from ray.train.v2.api import data_parallel_trainer

    return DefaultFailurePolicy, FailureDecision, data_parallel_trainer


def train_env_vars_to_propagate() -> set[str] | None:
    """The set of variables Ray Train copies from a trial driver to its controller."""
    found = _find("ENV_VARS_TO_PROPAGATE")
    return found if isinstance(found, set) else None


def tune_controller() -> Any:
    """Tune's `TuneController` class when it still has `_process_trial_failure` (its
    signature is checked by the tests through `signature_problems`)."""
    if _find("_process_trial_failure") is None:
        return None
    from ray.tune.execution.tune_controller import TuneController

    return TuneController


def driver_print_module() -> ModuleType | None:
    """The module whose `print_to_stdstream` prints other processes' output on the driver."""
    if _find("print_to_stdstream") is None:
        return None
    from ray._private import worker

    return worker


def reload_auth_settings() -> None:
    """Make this process see RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH as they are now: Ray reads
    them once, when it is imported (what Ray's own `_enable_token_auth` does)."""
    if signature_problems(("Config.initialize", "reset_cache")):
        raise RuntimeError("this Ray cannot reload its authentication settings: " + "; ".join(
            signature_problems(("Config.initialize", "reset_cache"))))
    import ray._raylet

    ray._raylet.Config.initialize("")  # type: ignore[attr-defined]
    ray._raylet.AuthenticationTokenLoader.instance().reset_cache()  # type: ignore[attr-defined]
