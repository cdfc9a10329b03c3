"""A frozen (linear-probe) trial with and without the feature cache, side by side in one run.

Runs the same one-trial search three times on the same prepared data (real pretrained
weights, embedded local Ray): the cache off (the frozen backbone runs every epoch), the cache
cold (this trial builds it) and warm (a later trial on the same backbone and data reads it).
Prints each trial's seconds (trial start → end, and the training part after startup), the
accuracy each reached, and the ratios to the uncached trial.

    python bench/feature_cache.py [--data data/fashion_mnist] [--epochs 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from automl.api import run_search
from automl.config.parse import from_dict
from automl.trial.features import FEATURES_DIR


def one_trial(data: str, cache: Path, run: Path, epochs: int, feature_cache: bool
              ) -> dict[str, Any]:
    """One frozen-backbone trial; its board row."""
    config = from_dict({
        "task": "image",
        "data": {"path": data, "val_fraction": 0.2, "image_size": 96, "cache_dir": str(cache)},
        "backbones": [{"name": "tf_efficientnet_lite0", "weights": "package"}],
        "space": {"unfreeze_fraction": 0.0, "head_lr": 0.01, "batch_size": 64},
        "train": {"epochs": epochs, "seed": 0, "feature_cache": feature_cache},
        "search": {"num_samples": 1, "rank_backbones": False},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 2},
    })
    row = run_search(config, run_dir=run, log=lambda _: None).leaderboard.iloc[0]
    return {k: row.get(k) for k in ("trial_time_s", "startup_s", "train_time_s", "eval_time_s",
                                    "val_accuracy", "feature_cache")}


def main() -> None:
    """The three trials and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/fashion_mnist")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="automl-bench-fc-"))
    cache = work / "cache"
    rows = {"off": one_trial(args.data, cache, work / "off", args.epochs, False)}
    for features in cache.glob(f"**/{FEATURES_DIR}"):
        shutil.rmtree(features)  # the cold run builds the cache itself
    rows["cold"] = one_trial(args.data, cache, work / "cold", args.epochs, True)
    rows["warm"] = one_trial(args.data, cache, work / "warm", args.epochs, True)

    def after_startup(r: dict[str, Any]) -> float:
        return float(r["trial_time_s"]) - float(r["startup_s"])

    print(f"\nfrozen tf_efficientnet_lite0 (package weights), {args.epochs} epochs, "
          f"{args.data}, 2 CPUs")
    print("cache   trial s  after startup s  train s  eval s  val_accuracy  ratio (trial, "
          "after startup) to off")
    for name, r in rows.items():
        print(f"{name:<6} {r['trial_time_s']:>8.1f} {after_startup(r):>16.1f} "
              f"{r['train_time_s']:>8.1f} {r['eval_time_s']:>7.1f} {r['val_accuracy']:>13.4f}"
              f"   {r['trial_time_s'] / rows['off']['trial_time_s']:.3f}, "
              f"{after_startup(r) / after_startup(rows['off']):.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
