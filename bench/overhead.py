"""Search overhead vs a bare PyTorch loop, measured side by side in one run.
(`bench/streaming.py` measures the data path: driver memory, preparation, streaming.)

1. Runs a real search (`automl.run_search`, embedded local Ray) twice: single-worker trials
   trained in their Tune trial process (the default), then in a Ray Train worker group each
   (`resources.single_worker_in_trial: false`). Backbone ranking is off in both, and the
   prepared data is cached by the first, so the trial phases compare like for like.
2. Re-runs exactly the trials of each (same plans, same number of epochs each trial really
   ran, whether ASHA stopped it or not) in a bare, sequential PyTorch loop in this process,
   using all cores, with the same data preparation, and takes that wall time.
3. Prints, per search, where each trial's seconds went (trial start → first step measured
   from Tune's start event), the trial phase's wall time and its ratio to the bare loop.

    python bench/overhead.py [SPACE.yaml] [--num-samples N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from automl.api import run_search
from automl.config import parse as config_mod
from automl.data.batches import local_batches
from automl.data.prepare import preflight_backbones, scan_data
from automl.data.shards import prepare_local
from automl.runs.history import load_records
from automl.tasks import get_task
from automl.trial.context import SearchContext, make_plan
from automl.trial.steps import evaluate, setup_trial, train_epoch


def bare_loop(space: Path, board: pd.DataFrame, context: SearchContext) -> float:
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
        plan = make_plan(params, context)
        setup = setup_trial(plan)
        data = tables[params["backbone"]]
        for epoch in range(1, int(row["epochs"]) + 1):
            train_epoch(setup, plan, epoch, device,
                        local_batches(data["train"], plan.batch_size, seed=epoch))
            evaluate(setup, plan, device, local_batches(data["val"], 64))
    return time.time() - start


def trial_phase_s(run_dir: Path) -> float:
    """Wall time from the first trial's start event to the last trial's end."""
    records = load_records(run_dir, str(run_dir))
    starts = [r.started_at for r in records if r.started_at is not None]
    ends = [r.started_at + r.trial_time_s for r in records if r.started_at is not None]
    return max(ends) - min(starts)


def one_search(space: Path, num_samples: int | None, in_trial: bool) -> dict[str, Any]:
    """Run the search with one executor for single-worker trials; its figures."""
    cfg = config_mod.load(space)
    cfg = dataclasses.replace(
        cfg, search=dataclasses.replace(cfg.search, rank_backbones=False,
                                        num_samples=num_samples or cfg.search.num_samples),
        resources=dataclasses.replace(cfg.resources, single_worker_in_trial=in_trial))
    run_dir = Path(tempfile.mkdtemp(prefix="automl-bench-"))
    result = run_search(cfg, run_dir=run_dir, log=lambda _: None)
    context = SearchContext.from_json(json.loads((run_dir / "static.json").read_text()))
    board = result.leaderboard
    ran = board[board["epochs"] > 0]
    name = "in the trial process" if in_trial else "Ray Train worker group"
    print(f"\n== single-worker trials: {name} ==")
    print(ran[["trial_id", "backbone", "unfreeze_depth", "epochs", "startup_s", "ray_startup_s",
               "setup_s", "train_time_s", "eval_time_s", "trial_time_s"]].to_string(
        index=False, float_format="%.1f"))
    phase, bare = trial_phase_s(run_dir), bare_loop(space, board, context)
    figures = {"name": name, "trials": len(board), "epochs": int(ran["epochs"].sum()),
               "startup": ran["startup_s"].mean(), "before_setup": ran["ray_startup_s"].mean(),
               "phase": phase, "bare": bare, "best": board["val_accuracy"].max()}
    print(f"trials {figures['trials']} ({figures['epochs']} epochs), mean trial start → first "
          f"step {figures['startup']:.1f}s (before model setup {figures['before_setup']:.1f}s)"
          f", trial phase {phase:.1f}s, bare loop {bare:.1f}s, ratio {phase / bare:.2f}x, "
          f"best {figures['best']:.4f}")
    return figures


def main() -> None:
    """Run both searches and the bare loops; print the ratios side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("space", nargs="?", default="search_spaces/demo_vision.yaml")
    parser.add_argument("--num-samples", type=int)
    args = parser.parse_args()
    space = Path(args.space)
    rows = [one_search(space, args.num_samples, in_trial) for in_trial in (True, False)]
    print("\nsingle-worker trials run      start→step  phase s  bare s  phase/bare")
    for r in rows:
        print(f"{r['name']:<28} {r['startup']:>9.1f}s {r['phase']:>8.1f} {r['bare']:>7.1f}"
              f" {r['phase'] / r['bare']:>10.2f}x")
    print(f"trial start → first step, Ray Train ÷ in trial: "
          f"{rows[1]['startup'] / rows[0]['startup']:.1f}x")


if __name__ == "__main__":
    main()
