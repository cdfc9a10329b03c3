"""Search overhead vs a bare PyTorch loop, measured side by side in one run.
(`bench/streaming.py` measures the data path: driver memory, preparation, streaming.)

1. Runs a real search (`automl.run_search`, embedded local Ray) and takes its wall time.
2. Re-runs exactly the same trials (same plans, same number of epochs each trial really ran,
   whether ASHA stopped it or not) in a bare, sequential PyTorch loop in this process, using
   all cores, with the same data preparation, and takes that wall time.
3. Prints the ratio and where each trial's seconds went inside the search.

    python bench/overhead.py [SPACE.yaml] [--num-samples N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from automl import config as config_mod
from automl.api import run_search
from automl.plan import make_plan
from automl.prepare import preflight_backbones, scan_data
from automl.prepared import local_batches, prepare_local
from automl.tasks import get_task
from automl.train import evaluate, setup_trial, train_epoch


def bare_loop(space: Path, board: pd.DataFrame, static: dict[str, Any]) -> float:
    """Wall time of the same trials in a plain sequential loop (no Ray)."""
    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device("cpu")
    start = time.time()
    cfg = config_mod.load(space)
    task, catalog, pre = get_task(cfg.task), scan_data(cfg), preflight_backbones(cfg)
    tables = {label: prepare_local(task, catalog, cfg.data, p) for label, p in pre.items()}
    for _, row in board[board["epochs"] > 0].iterrows():
        knobs = ("unfreeze_fraction", "head_lr", "backbone_lr", "layer_decay", "lp_ft_epochs",
                 "weight_decay", "batch_size", "pooling", "max_length")
        params = {k: row[k] for k in knobs if not pd.isna(row[k])}
        params["backbone"] = f"{row['backbone']}:{row['weights']}"
        plan = make_plan(params, static)
        setup = setup_trial(plan)
        data = tables[params["backbone"]]
        for epoch in range(1, int(row["epochs"]) + 1):
            train_epoch(setup, plan, epoch, device,
                        local_batches(data["train"], plan.batch_size, seed=epoch))
            evaluate(setup, plan, device, local_batches(data["val"], 64))
    return time.time() - start


def main() -> None:
    """Run both and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("space", nargs="?", default="search_spaces/demo_vision.yaml")
    parser.add_argument("--num-samples", type=int)
    args = parser.parse_args()
    space = Path(args.space)
    run_dir = Path(tempfile.mkdtemp(prefix="automl-bench-"))
    result = run_search(space, run_dir=run_dir, num_samples=args.num_samples)
    static = json.loads((run_dir / "static.json").read_text())
    board = result.leaderboard
    bare = bare_loop(space, board, static)

    ran = board[board["epochs"] > 0]
    print("\nWhere each trial's seconds went inside the search (per trial):")
    print(ran[["trial_id", "backbone", "unfreeze_depth", "epochs", "ray_startup_s", "setup_s",
               "train_time_s", "eval_time_s", "trial_time_s"]].to_string(
        index=False, float_format="%.1f"))
    print(f"\ntrials: {len(board)} ({int(ran['epochs'].sum())} epochs in all)")
    print(f"mean startup (trial start → first step): {ran['startup_s'].mean():.1f}s, of which "
          f"Ray (driver, controller, workers): {ran['ray_startup_s'].mean():.1f}s")
    print(f"search wall time (Ray Tune + Train):     {result.wall_time_s:.1f}s")
    print(f"bare PyTorch loop, same trials:          {bare:.1f}s")
    print(f"ratio search / bare:                     {result.wall_time_s / bare:.2f}x")


if __name__ == "__main__":
    main()
