"""Module paths of run dirs written before automl's modules moved into packages.

Ray pickles some of automl's objects into `RUN/tune/` by module path (the searcher and its
sampling function, the concurrency limiter, the callbacks, the resources section of the
config). A search started before the move resumes only if those paths still import: this
maps each old flat module to where it lives now. Nothing else uses the old names."""

from __future__ import annotations

import importlib
import sys

MOVED = {
    "config": "config.parse", "config_schema": "config.schema", "spaces": "config.spaces",
    "presets": "config.presets", "durations": "config.durations",
    "space_file": "config.space_file", "detect": "data.detect", "sources": "data.sources",
    "catalog": "data.catalog", "prepare": "data.prepare", "prepared": "data.shards",
    "prepared_cache": "data.shard_cache", "batches": "data.batches", "demo_data": "data.demo",
    "plan": "trial.plan", "train": "trial.steps", "trial_loop": "trial.loop",
    "worker": "trial.workers", "trainer": "trial.executors",
    "checkpoints": "trial.checkpoints", "probe": "trial.probe", "features": "trial.features",
    "measure": "trial.measure", "search": "search.tune", "ranking": "search.ranking",
    "transferability": "search.transferability", "budget": "search.budget",
    "tracking": "search.tracking", "progress": "search.progress",
    "ray_session": "search.ray_session", "failures": "trial.failures",
    "run_dir": "runs.location", "run_lock": "runs.lock", "history": "runs.history",
    "leaderboard": "runs.leaderboard", "board_format": "runs.board_io", "runs": "runs.read",
}
"""Old module (under `automl.`) → its module now."""


def install_old_module_paths() -> None:
    """Make every old `automl.<module>` path resolve to the module that replaced it, so
    unpickling a run dir's Tune state finds its classes and functions. Where the old module's
    name is now a package (`config`, `search`, `runs`), the package lends the old module's
    names instead (`automl.search.ClusterSizedLimiter`, `automl.search._trial_dirname`)."""
    for old, new in MOVED.items():
        module = importlib.import_module(f"automl.{new}")
        name = f"automl.{old}"
        if name not in sys.modules:
            sys.modules[name] = module
        elif sys.modules[name] is not module:  # now a package
            package = sys.modules[name]
            for attribute, value in vars(module).items():
                if not attribute.startswith("__") and not hasattr(package, attribute):
                    setattr(package, attribute, value)
