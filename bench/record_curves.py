"""Record the learning curves that `bench/replay.py` plays back (issue 28: a recorded-curves
benchmark, as LCBench / YAHPO / HPOBench do for HPO methods).

A seeded sample of configurations of a demo space — stratified over (backbone, unfreeze
fraction) cells so every adaptation choice and the from-scratch baseline are in it, a Latin
hypercube over the numeric knobs within each cell, categorical knobs drawn at random — each
trains all its epochs through the real search (`automl.api.run_search` with the configurations
as `first_trials`, FIFO, the space's own resources and concurrency) on a validation set of
≥ 2,000 examples no demo run uses: 2,000 of Fashion-MNIST's official test images (seed 2)
for the image space, 2,000 Rotten Tomatoes snippets the text demo's table left out for text
(either may share examples with a demo's test split: the benchmark scores no test split).

Configurations are recorded round-robin over the cells, so a table recorded in part covers
every cell evenly. Each one's per-epoch validation accuracy and Tune's `time_total_s` (the
trial's clock) go into `bench/curves/<space>.csv`, with the seconds between a trial's start
event and the trial end that freed its slot (`launch_s`, Tune's launch overhead; empty for
the first wave). Trials train on all 2,000 demo images (the demo
holds 400 of them out for validation), so epochs take ≈ 25 % longer than in the demo, for
every method alike. Recording runs in pieces (`--piece` configurations per search) and
resumes: configurations already in the table are skipped, so it can be stopped
and continued any time. The first piece also records the backbone ranking the search would
use (`<space>-ranking.json`: order and wall seconds), which the replay charges to `automl`.

    python bench/record_curves.py image [--configs 150] [--piece 16] [--limit N]
    python bench/record_curves.py text  [--configs 150] [--piece 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.api import run_search
from automl.config import parse as config_mod
from automl.config.schema import Config
from automl.config.spaces import sample_trial
from automl.data import demo
from automl.ownership import write_atomic
from automl.runs.history import read_events
from automl.runs.layout import HISTORY_FILE

CURVES = Path(__file__).parent / "curves"
SPACES = {"image": Path("search_spaces/demo_vision.yaml"),
          "text": Path("search_spaces/demo_text.yaml")}
VAL_SEED = 2
VAL_EXAMPLES = 2000
COLUMNS = ["config", "epoch", "val_accuracy", "val_examples", "time_total_s", "launch_s",
           "params"]


def validation_data(kind: str, root: Path = Path("data/bench")) -> Path:
    """The benchmark's validation set (written once): 2,000 examples no demo run uses."""
    if kind == "image":
        return demo.write_fashion_mnist_test(root / "fashion_mnist_val2000",
                                             per_class=VAL_EXAMPLES // 10, seed=VAL_SEED)
    out = root / "rotten_tomatoes_val2000.csv"
    if not out.exists():
        rows = demo.held_back_reviews(Path("data/rotten_tomatoes.csv"), VAL_EXAMPLES // 2,
                                      seed=VAL_SEED)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, rows.rename(columns={"category": "label"})[["text", "label"]]
                     .to_csv(index=False))
    return out


def bench_config(kind: str, val_path: Path | None = None) -> Config:
    """The demo space as the benchmark trains it: its validation split from `val_path`, no
    test split, every trial all its epochs (FIFO), nothing after the search but the export."""
    cfg = config_mod.load(SPACES[kind])
    data = dataclasses.replace(cfg.data, test_path=None, test_fraction=0.0,
                               val_path=str(val_path.resolve()) if val_path else None,
                               cache_dir=str(Path("data/bench/prepared").resolve()))
    search = dataclasses.replace(cfg.search, sampler="random", scheduler="fifo",
                                 final_seeds=0, calibrate=False, time_budget=None)
    return dataclasses.replace(cfg, data=data, search=search)


def sample_configs(cfg: Config, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` configurations: as even a share of every (backbone, unfreeze fraction) cell
    as the count allows, a Latin hypercube over the numeric knobs within a cell, categorical
    knobs at random. Each holds only the parameters that act (as `sample_trial` samples)."""
    rng = np.random.default_rng(seed)
    labels = [b.label for b in cfg.backbones]
    depths = _choices(cfg.space.get("unfreeze_fraction"))
    cells = [(b, d) for b in labels for d in depths]
    per_cell = [count // len(cells) + (i < count % len(cells)) for i in range(len(cells))]
    numeric = {k: v for k, v in cfg.space.items()
               if isinstance(v, (FloatDistribution, IntDistribution))}
    configs: list[dict[str, Any]] = []
    for (label, depth), n in zip(cells, per_cell, strict=True):
        strata = {k: (rng.permutation(n) + rng.random(n)) / max(n, 1) for k in numeric}
        for i in range(n):
            full: dict[str, Any] = {"backbone": label, "unfreeze_fraction": depth}
            for name, spec in cfg.space.items():
                if name in full:
                    continue
                if name in numeric:
                    full[name] = _at(spec, strata[name][i])
                elif isinstance(spec, CategoricalDistribution):
                    full[name] = spec.choices[int(rng.integers(len(spec.choices)))]
                else:
                    full[name] = spec
            configs.append(_acting(cfg, full))
    return configs


def _choices(spec: Any) -> list[Any]:
    return list(spec.choices) if isinstance(spec, CategoricalDistribution) else [spec]


def _at(spec: FloatDistribution | IntDistribution, u: float) -> float | int:
    """The value at quantile `u` of a range (log-uniform where the range is log)."""
    low, high = float(spec.low), float(spec.high)
    value = math.exp(math.log(low) + u * math.log(high / low)) if spec.log \
        else low + u * (high - low)
    if isinstance(spec, IntDistribution):
        return round(value)
    return float(f"{value:.4g}")


def _acting(cfg: Config, full: dict[str, Any]) -> dict[str, Any]:
    """The searched parameters of `full` that act for it (what the searcher would sample)."""
    fixed = optuna.trial.FixedTrial(full)
    params = sample_trial(fixed, [b.label for b in cfg.backbones], cfg.space,
                          feature_cache=cfg.train.feature_cache
                          and cfg.resources.workers_per_trial == 1)
    return {k: v for k, v in params.items()
            if k == "backbone" or not _is_fixed(cfg.space.get(k))}


def _is_fixed(spec: Any) -> bool:
    return not isinstance(spec, (CategoricalDistribution, FloatDistribution, IntDistribution))


def key(params: dict[str, Any], names: list[str]) -> str:
    """A configuration's identity: its values of `names` (the sampled ones)."""
    return json.dumps({k: params[k] for k in sorted(names) if k in params}, sort_keys=True)


def record_piece(cfg: Config, piece: list[tuple[int, dict[str, Any]]], run_dir: Path,
                 log_file: Path) -> tuple[pd.DataFrame, float | None]:
    """Train `piece` (index, configuration) in one search; its rows for the table, and the
    backbone ranking's wall seconds when the search ranked (None otherwise)."""
    cfg = dataclasses.replace(cfg, first_trials=tuple(p for _, p in piece),
                              search=dataclasses.replace(cfg.search, num_samples=len(piece)))
    ranking: list[float] = []

    def log(line: str) -> None:
        with log_file.open("a") as f:
            f.write(line + "\n")
        if found := re.match(r"Backbone ranking in (\d+) s", line):
            ranking.append(float(found.group(1)))

    try:
        run_search(cfg, run_dir=run_dir, log=log)
    except Exception as exc:  # an errored trial leaves the others' curves
        log(f"search ended with {type(exc).__name__}: {exc}")
    names = sorted({k for _, p in piece for k in p})
    wanted = {key(p, names): i for i, p in piece}
    events = read_events(run_dir / HISTORY_FILE)
    started = {e["trial_id"]: (e["time"], key(e["params"], names))
               for e in events if e.get("event") == "start"}
    gaps = launch_gaps(events)
    rows = []
    for event in events:
        if event.get("event") != "result" or event["trial_id"] not in started:
            continue
        _, identity = started[event["trial_id"]]
        metrics = event["metrics"]
        if identity not in wanted or "val_accuracy" not in metrics:
            continue
        rows.append({
            "config": wanted[identity], "epoch": int(metrics["epoch"]),
            "val_accuracy": float(metrics["val_accuracy"]),
            "val_examples": int(metrics["val_examples"]),
            "time_total_s": float(metrics["time_total_s"]),
            "launch_s": gaps.get(event["trial_id"], math.nan),
            "params": json.dumps(dict(piece)[wanted[identity]], sort_keys=True),
        })
    return pd.DataFrame(rows, columns=COLUMNS), (ranking[0] if ranking else None)


def interleaved(configs: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Round-robin over the (backbone, unfreeze fraction) cells, so a table recorded in part
    (recording stops and resumes) covers every cell evenly."""
    seen: dict[tuple[str, Any], int] = {}
    ranks = []
    for i, c in configs:
        cell = (c["backbone"], c.get("unfreeze_fraction"))
        seen[cell] = seen.get(cell, -1) + 1
        ranks.append((seen[cell], list(seen).index(cell), i, c))
    return [(i, c) for *_, i, c in sorted(ranks, key=lambda r: (r[0], r[1]))]


def launch_gaps(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from the trial end that freed a slot to the next trial's start (Tune's launch
    overhead), per trial started that way (the first wave has none)."""
    gaps: dict[str, float] = {}
    last_end = last_start = -math.inf
    for event in sorted(events, key=lambda e: float(e["time"])):
        if event.get("event") == "end":
            last_end = float(event["time"])
        elif event.get("event") == "start":
            if last_end > last_start:
                gaps[event["trial_id"]] = float(event["time"]) - last_end
            last_start = float(event["time"])
    return gaps


def main() -> None:
    """Record (or continue recording) one space's table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("space", choices=sorted(SPACES))
    parser.add_argument("--configs", type=int, default=150)
    parser.add_argument("--piece", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None,
                        help="record at most this many pieces now (default: until done)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CURVES, help="table folder")
    args = parser.parse_args()
    curves = args.out
    curves.mkdir(parents=True, exist_ok=True)
    cfg = bench_config(args.space, validation_data(args.space))
    configs_file = curves / f"{args.space}-configs.json"
    if configs_file.exists():
        configs = json.loads(configs_file.read_text())
    else:
        configs = sample_configs(cfg, args.configs, args.seed)
        write_atomic(configs_file, json.dumps(configs, indent=1))
    table_file = curves / f"{args.space}.csv"
    table = pd.read_csv(table_file) if table_file.exists() else pd.DataFrame(columns=COLUMNS)
    ranking_file = curves / f"{args.space}-ranking.json"
    done = set(table["config"].astype(int))
    pending = interleaved([(i, c) for i, c in enumerate(configs) if i not in done])
    pieces = [pending[i:i + args.piece] for i in range(0, len(pending), args.piece)]
    for n, piece in enumerate(pieces[:args.limit]):
        rank = not ranking_file.exists()
        piece_cfg = dataclasses.replace(cfg, search=dataclasses.replace(
            cfg.search, rank_backbones=rank))
        started = time.time()
        with tempfile.TemporaryDirectory(prefix=f"automl-curves-{args.space}-") as tmp:
            rows, ranking_s = record_piece(piece_cfg, piece, Path(tmp) / "run",
                                           curves / f"{args.space}-record.log")
            if rank and ranking_s is not None:
                context = json.loads((Path(tmp) / "run" / "static.json").read_text())
                order = list(context.get("transferability") or {})
                write_atomic(ranking_file, json.dumps({"order": order,
                                                       "seconds": ranking_s}, indent=1))
        table = pd.concat([table, rows], ignore_index=True) if len(table) else rows
        write_atomic(table_file, table.to_csv(index=False))
        print(f"piece {n + 1}/{len(pieces)}: {rows['config'].nunique()} of {len(piece)} "
              f"configurations recorded in {time.time() - started:.0f} s; table: "
              f"{table['config'].nunique()} of {len(configs)}", flush=True)


if __name__ == "__main__":
    main()
