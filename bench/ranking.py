"""Backbone ranking cost and quality, measured side by side in one run.

1. For every pretrained backbone of a space: frozen-feature extraction of the ranking's
   examples, first uncached, then from the feature cache; and the time to score them
   (k-NN accuracy, LogME). Prints the cached ÷ uncached ratio.
2. With `--run RUN_DIR` (a finished search of the same space): how well the ranking ordered
   the backbones against the best accuracy their fine-tunes reached (Kendall's τ).

    python bench/ranking.py [SPACE.yaml] [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from automl.config import parse as config_mod
from automl.data.prepare import preflight_backbones, scan_data
from automl.data.shards import prepare_local
from automl.search import transferability
from automl.search.transferability import ranking_quality
from automl.tasks import get_task
from automl.trial import features
from automl.trial.context import SearchContext, make_plan


class _Rows:
    """The `iter_batches` of a Ray Dataset over an in-memory table (no Ray needed here)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def iter_batches(self, batch_size: int, batch_format: str) -> Any:
        return iter(self.table.to_batches(max_chunksize=batch_size))


def main() -> None:
    """Extract, cache and score each backbone; print the ratios (and τ with --run)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("space", nargs="?", default="search_spaces/demo_vision.yaml")
    parser.add_argument("--run", help="a finished search of this space, for Kendall's τ")
    args = parser.parse_args()
    cfg = config_mod.load(args.space)
    task, catalog, pre = get_task(cfg.task), scan_data(cfg), preflight_backbones(cfg)
    context = SearchContext.from_config(cfg, list(catalog.classes), pre)
    params = {"unfreeze_fraction": 0.0, "head_lr": 1e-3, "weight_decay": 0.0,
              "batch_size": 64, "pooling": "mean", "max_length": 128}
    print(f"{'backbone':32s} {'uncached s':>10s} {'cached s':>9s} {'ratio':>7s} "
          f"{'score s':>8s} {'k-NN':>6s} {'LogME':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for choice in cfg.backbones:
            if not choice.pretrained:
                continue
            tables = prepare_local(task, catalog, cfg.data, pre[choice.label])
            plan = make_plan({**params, "backbone": choice.label}, context).to_dict()
            where = features.feature_location(tmp, choice.label, plan, (1000, 500))
            rows = (_Rows(tables["train"]), _Rows(tables["val"]))
            uncached = features.extract(plan, *rows, where)
            cached = features.extract(plan, *rows, where)
            t = time.perf_counter()
            scores = transferability.score(cached)
            scoring = time.perf_counter() - t
            print(f"{choice.label:32s} {uncached['seconds']:10.2f} {cached['seconds']:9.3f} "
                  f"{cached['seconds'] / uncached['seconds']:7.4f} {scoring:8.3f} "
                  f"{scores['knn_accuracy']:6.3f} {scores['logme']:7.3f}")
    if args.run:
        import pandas as pd

        table = ranking_quality(pd.read_csv(Path(args.run) / "leaderboard.csv"))
        print(table.to_string())
        print(f"Kendall's τ vs best fine-tuned accuracy: {table.attrs.get('kendall_tau')}")


if __name__ == "__main__":
    main()
