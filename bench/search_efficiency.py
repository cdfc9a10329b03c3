"""How soon a search finds a good configuration: this search vs a textbook random search,
side by side in one run, at equal wall-clock budgets, over several seeds.

- `automl`: TPE + ASHA + backbone ranking (seeding the first trials) + feature cache;
- `random + FIFO`: Optuna's RandomSampler (plain random search), FIFO scheduler (every trial
  runs all its epochs), no ranking, no feature cache.

Both run the same space, data, trials code and resources (embedded local Ray), each with
`--budget` of wall-clock time (`search.time_budget`), for each seed. From each run's history
the best-so-far validation accuracy is read against seconds since the search started (data
preparation included, so the ranking's cost counts). Prints the curves on a time grid, the
best each reached, and the seconds each needed to come within `--within` (default 1 point)
of the best accuracy any run found; the ratio is random's ÷ ours.

`--baseline-budget` gives random + FIFO a longer budget than ours (default: the same), so
that the seconds it needs to reach the target are measured rather than bounded: a run that
never gets there counts as its whole budget, and the ratio is then printed as a lower bound.

    python bench/search_efficiency.py [SPACE.yaml] [--budget 6m] [--baseline-budget 15m]
                                      [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from automl.api import run_search
from automl.config import parse as config_mod
from automl.config.durations import parse_duration
from automl.runs.history import LOGGED_AT, read_events
from automl.runs.layout import HISTORY_FILE

METHODS: dict[str, dict[str, Any]] = {
    "automl": {"sampler": "tpe", "scheduler": "asha", "rank_backbones": True,
               "feature_cache": True},
    "random+FIFO": {"sampler": "random", "scheduler": "fifo", "rank_backbones": False,
                    "feature_cache": False},
}


def best_so_far(run_dir: Path, began: float) -> list[tuple[float, float]]:
    """(seconds since `began`, best validation accuracy so far) at each new best."""
    results = [e for e in read_events(run_dir / HISTORY_FILE) if e.get("event") == "result"]
    curve: list[tuple[float, float]] = []
    for item in sorted(results, key=lambda e: float(e["metrics"].get(LOGGED_AT) or e["time"])):
        acc = item["metrics"].get("val_accuracy")
        at = float(item["metrics"].get(LOGGED_AT) or item["time"]) - began
        if isinstance(acc, float) and (not curve or acc > curve[-1][1]):
            curve.append((at, acc))
    return curve


def at_time(curve: list[tuple[float, float]], seconds: float) -> float:
    """Best accuracy reached by `seconds` (nan before the first result)."""
    reached = [acc for at, acc in curve if at <= seconds]
    return reached[-1] if reached else math.nan


def time_to(curve: list[tuple[float, float]], target: float) -> float:
    """Seconds until the curve first reaches `target` (inf if never)."""
    return next((at for at, acc in curve if acc >= target), math.inf)


def one_run(space: Path, method: str, seed: int, budget: str) -> list[tuple[float, float]]:
    """One search; its best-so-far curve (seconds from the run's start)."""
    import time

    cfg = config_mod.load(space)
    knobs = METHODS[method]
    cfg = dataclasses.replace(
        cfg,
        search=dataclasses.replace(cfg.search, seed=seed, time_budget=budget, num_samples=None,
                                   sampler=knobs["sampler"], scheduler=knobs["scheduler"],
                                   rank_backbones=knobs["rank_backbones"]),
        train=dataclasses.replace(cfg.train, feature_cache=knobs["feature_cache"]))
    run_dir = Path(tempfile.mkdtemp(prefix=f"automl-eff-{method[:6]}-{seed}-"))
    started = time.time()
    try:
        run_search(cfg, run_dir=run_dir, log=lambda _: None)
    except Exception as exc:  # a budget that ends mid-trial still leaves a history
        print(f"{method} seed {seed}: {type(exc).__name__}: {str(exc)[:120]}")
    return best_so_far(run_dir, started)


def main() -> None:
    """Run every method × seed; print curves, best and time-to-target."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("space", nargs="?", default="search_spaces/demo_vision.yaml")
    parser.add_argument("--budget", default="6m")
    parser.add_argument("--baseline-budget", default=None,
                        help="random+FIFO's budget (default: --budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--within", type=float, default=0.01)
    args = parser.parse_args()
    space = Path(args.space)
    budgets = {"automl": args.budget, "random+FIFO": args.baseline_budget or args.budget}
    curves: dict[str, list[list[tuple[float, float]]]] = {m: [] for m in METHODS}
    for seed in args.seeds:
        for method in METHODS:
            curves[method].append(one_run(space, method, seed, budgets[method]))
            print(f"{method} seed {seed}: " + ", ".join(
                f"{at:.0f}s {acc:.4f}" for at, acc in curves[method][-1]))
    best = max(acc for runs in curves.values() for curve in runs for _, acc in curve)
    target = best - args.within
    horizon = max(at for runs in curves.values() for curve in runs for at, _ in curve)
    grid = [horizon * i / 8 for i in range(1, 9)]
    print(f"\nbest-so-far validation accuracy (mean over seeds {args.seeds}), budgets "
          + ", ".join(f"{m} {b}" for m, b in budgets.items()))
    print("seconds      " + "".join(f"{t:>8.0f}" for t in grid))
    for method, runs in curves.items():
        means = [statistics.fmean(at_time(c, t) for c in runs) for t in grid]
        print(f"{method:<12} " + "".join(f"{m:>8.4f}" for m in means))
    print(f"\nbest found by any run: {best:.4f}; target (within {args.within:.2f}): {target:.4f}")
    needed: dict[str, tuple[float, bool]] = {}
    for method, runs in curves.items():
        times = [time_to(c, target) for c in runs]
        finite = [t for t in times if math.isfinite(t)]
        # A run that never got there needed more than its whole budget: count the budget.
        whole = parse_duration(budgets[method])
        needed[method] = (statistics.fmean(min(t, whole) for t in times),
                          len(finite) == len(times))
        print(f"{method:<12} best {statistics.fmean(c[-1][1] for c in runs if c):.4f}, "
              f"reached the target in {len(finite)}/{len(times)} runs, seconds "
              f"{[round(t) if math.isfinite(t) else None for t in times]}")
    (ours, ours_all), (theirs, theirs_all) = needed["automl"], needed["random+FIFO"]
    if ours_all:
        bound = "" if theirs_all else "≥ "
        print(f"mean seconds to target: automl {ours:.0f}, random+FIFO {bound}{theirs:.0f}; "
              f"random+FIFO ÷ automl: {bound}{theirs / ours:.1f}x")
    else:
        print("no ratio: automl did not reach the target in every run (see the runs above)")


if __name__ == "__main__":
    main()
