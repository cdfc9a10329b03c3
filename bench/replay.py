"""Replay recorded learning curves through the real search code, many seeds in minutes
(issue 28; the recorded-curves method of LCBench / YAHPO / HPOBench's tabular benchmarks).

The searcher is `automl.search.tune.make_searcher` (Optuna TPE or random over the demo
space, define-by-run, first points enqueued) and the scheduler `make_scheduler` (Ray Tune's
ASHA or FIFO) — the very objects a search builds, driven here by a discrete-event loop in
simulated time instead of Ray: `concurrency` slots, each trial a `ReplayTrial` that plays back
the recorded curve of the configuration nearest to what the searcher suggested (same backbone
and unfreeze fraction; then nearest in the other knobs, normalized to their ranges) with its
recorded timing. Tune's calls are reproduced: `suggest` when a slot frees,
`on_trial_result` to both searcher and scheduler per epoch, `on_trial_complete` when ASHA
stops a trial or it ends; sampling stops when less budget is left than the quickest first
epoch (`ClusterSizedLimiter`), and a result after the budget does not count.

Per space it prints mean best-so-far curves with their spread, normalized regret at fixed
budgets ((best recorded − best so far) ÷ (best recorded − median recorded), per
configuration its best epoch) and time to within `--within` of the best recorded
configuration as the ratio of mean times (a miss counts as the method's whole budget;
random search gets `--baseline-factor` × the budget so its misses cannot inflate the ratio).

    python bench/replay.py image [--budget 600] [--seeds 20] [--variant NAME ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import FloatDistribution, IntDistribution
from ray.tune.schedulers import TrialScheduler

from automl.config import parse as config_mod
from automl.config.schema import Config
from automl.search.ranking import seed_points
from automl.search.tune import make_scheduler, make_searcher

CURVES = Path(__file__).parent / "curves"
SPACES = {"image": Path("search_spaces/demo_vision.yaml"),
          "text": Path("search_spaces/demo_text.yaml")}
EXACT = ("backbone", "unfreeze_fraction")
"""Knobs a suggestion must match exactly in the table (the cells it was sampled over)."""


@dataclass(frozen=True)
class Recorded:
    """One configuration's recorded run: validation accuracy and the trial's clock
    (Tune's `time_total_s`) at the end of each epoch, and the seconds Tune took to launch
    it once a slot was free."""

    params: dict[str, Any]
    curve: tuple[float, ...]
    clock: tuple[float, ...]
    launch_s: float
    examples: int = 2000
    """The validation split's size (the rung tolerance's n)."""

    @property
    def best(self) -> float:
        """Its best epoch (what the board and selection compare)."""
        return max(self.curve)


@dataclass(frozen=True)
class Table:
    """A recorded table and the space it was sampled from."""

    rows: tuple[Recorded, ...]
    config: Config

    @property
    def best(self) -> float:
        """The best recorded configuration's best epoch."""
        return max(r.best for r in self.rows)

    @property
    def median(self) -> float:
        """The median configuration's best epoch."""
        return float(statistics.median(r.best for r in self.rows))

    def nearest(self, params: dict[str, Any]) -> Recorded:
        """The recorded configuration nearest to `params` (see the module doc)."""
        cell = [r for r in self.rows if all(r.params.get(k) == params.get(k) for k in EXACT)]
        pool = cell or [r for r in self.rows if r.params["backbone"] == params["backbone"]] \
            or list(self.rows)
        return min(pool, key=lambda r: self._distance(r.params, params))

    def _distance(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        total = 0.0
        for name in (set(a) | set(b)) - {"backbone"}:
            if name not in a or name not in b:
                total += 1.0
                continue
            spec = self.config.space.get(name)
            if isinstance(spec, (FloatDistribution, IntDistribution)) and spec.high > spec.low:
                if spec.log:
                    span = math.log(spec.high / spec.low)
                    total += abs(math.log(float(a[name]) / float(b[name]))) / span
                else:
                    total += abs(float(a[name]) - float(b[name])) / (spec.high - spec.low)
            else:
                total += float(a[name] != b[name])
        return total


def load_table(kind: str, curves: Path = CURVES, space: Path | None = None) -> Table:
    """`curves/<kind>.csv` (as `record_curves.py` writes it) with its space."""
    frame = pd.read_csv(curves / f"{kind}.csv").sort_values(["config", "epoch"])
    # A first-wave trial has no measured launch gap: it gets the table's median.
    typical = frame["launch_s"].median()
    frame["launch_s"] = frame["launch_s"].fillna(0.0 if pd.isna(typical) else typical)
    rows = []
    for _, group in frame.groupby("config"):
        rows.append(Recorded(json.loads(group["params"].iloc[0]),
                             tuple(group["val_accuracy"]), tuple(group["time_total_s"]),
                             float(group["launch_s"].iloc[0]),
                             int(group["val_examples"].iloc[0])))
    return Table(tuple(rows), config_mod.load(space or SPACES[kind]))


class ReplayTrial:
    """The replay's trainable: the recorded run's results, each with the simulated time it
    arrives at (`start` + launch + the trial's clock at that epoch)."""

    def __init__(self, recorded: Recorded, start: float, metric: str) -> None:
        self.recorded, self.start, self.metric = recorded, start, metric

    def results(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, Tune result) per epoch."""
        return [(self.start + self.recorded.launch_s + clock,
                 {"epoch": epoch, "training_iteration": epoch, self.metric: value,
                  "time_total_s": clock, "val_examples": self.recorded.examples})
                for epoch, (value, clock) in enumerate(
                    zip(self.recorded.curve, self.recorded.clock, strict=True), 1)]


@dataclass(frozen=True)
class Method:
    """A search method: search-section overrides, whether it ranks the backbones (paying the
    recorded ranking's seconds) and seeds its first trials as the search does
    (`seed_points`), and a replacement sampler."""

    name: str
    search: dict[str, Any]
    ranked: bool = False
    sampler: Callable[[Config], optuna.samplers.BaseSampler] | None = None
    """Replaces the search's Optuna sampler (a TPE setting under trial)."""
    seeded: bool = True
    """First trials as the search picks them (`seed_points`); off for textbook random."""


AUTOML = Method("automl", {"sampler": "tpe", "scheduler": "asha"}, ranked=True)
RANDOM = Method("random+FIFO", {"sampler": "random", "scheduler": "fifo"}, seeded=False)


@dataclass(frozen=True)
class Run:
    """One replayed search: its best-so-far curve [(seconds, best accuracy)], the trials it
    launched and the epochs they reported within the budget."""

    curve: tuple[tuple[float, float], ...]
    trials: int
    epochs: int


def simulate(table: Table, method: Method, seed: int, budget_s: float, concurrency: int,
             ranking: dict[str, Any] | None = None) -> Run:
    """One search in simulated time."""
    cfg = table.config
    cfg = dataclasses.replace(cfg, search=dataclasses.replace(
        cfg.search, seed=seed, num_samples=None, time_budget=budget_s, **method.search))
    order = list((ranking or {}).get("order", [])) if method.ranked else []
    first = list(cfg.first_trials)
    now = float(ranking["seconds"]) if method.ranked and ranking else 0.0
    if method.seeded:  # the search's first trials after ranking (none ranked: the space's)
        first += seed_points({label: {} for label in order}, cfg, concurrency)
    sampler = method.sampler(cfg) if method.sampler else None
    searcher, scheduler = make_searcher(cfg, first, sampler), make_scheduler(cfg)
    metric = cfg.search.objective
    np.random.seed(seed)  # ASHA picks brackets with numpy's global generator
    events: list[tuple[float, int, str]] = []  # (arrival, order, trial): the next results
    running: dict[str, tuple[Any, list[tuple[float, dict[str, Any]]]]] = {}
    quickest = math.inf  # the quickest first epoch so far
    curve: list[tuple[float, float]] = []
    launched = epochs = 0

    def launch(at: float) -> bool:
        nonlocal launched
        if budget_s - at < (quickest if math.isfinite(quickest) else 0.0):
            # as ClusterSizedLimiter: no new trial that cannot report before the budget ends
            return False
        trial_id = f"replay_{launched:05d}"
        launched += 1
        params = searcher.suggest(trial_id)
        if not params:
            return False
        trial = SimpleNamespace(trial_id=trial_id)
        scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
        results = ReplayTrial(table.nearest(params), at, metric).results()
        running[trial_id] = (trial, results)
        heapq.heappush(events, (results[0][0], launched, trial_id))
        return True

    while len(running) < concurrency and launch(now):
        pass
    while events:
        at, rank, trial_id = heapq.heappop(events)
        if at > budget_s:
            break
        trial, results = running[trial_id]
        _, result = results.pop(0)
        epochs += 1
        if result["epoch"] == 1:
            quickest = min(quickest, result["time_total_s"])
        if not curve or result[metric] > curve[-1][1]:
            curve.append((at, result[metric]))
        searcher.on_trial_result(trial_id, result)
        decision = scheduler.on_trial_result(None, trial, result)  # type: ignore[arg-type]
        if decision == TrialScheduler.STOP or not results:
            searcher.on_trial_complete(trial_id, result)
            scheduler.on_trial_complete(None, trial, result)  # type: ignore[arg-type]
            del running[trial_id]
            while len(running) < concurrency and launch(at):
                pass
        else:
            heapq.heappush(events, (results[0][0], rank, trial_id))
    return Run(tuple(curve), launched, epochs)


def at_time(curve: list[tuple[float, float]], seconds: float, floor: float) -> float:
    """Best accuracy reached by `seconds` (`floor` before the first result)."""
    reached = [value for at, value in curve if at <= seconds]
    return reached[-1] if reached else floor


def time_to(curve: list[tuple[float, float]], target: float) -> float:
    """Seconds until the curve first reaches `target` (inf if never)."""
    return next((at for at, value in curve if value >= target), math.inf)


@dataclass(frozen=True)
class Outcome:
    """A method's replays on one table."""

    method: str
    budget_s: float
    runs: tuple[Run, ...]

    @property
    def curves(self) -> list[tuple[tuple[float, float], ...]]:
        """Each seed's best-so-far curve."""
        return [r.curve for r in self.runs]

    def times_to(self, target: float) -> list[float]:
        """Seconds to `target` per seed, a miss counted as the whole budget."""
        return [min(time_to(list(c), target), self.budget_s) for c in self.curves]

    def hits(self, target: float) -> int:
        """Seeds that reached `target` within the budget."""
        return sum(math.isfinite(time_to(list(c), target)) for c in self.curves)


def replay(table: Table, method: Method, seeds: list[int], budget_s: float,
           concurrency: int, ranking: dict[str, Any] | None) -> Outcome:
    """`method` over `seeds` on `table`."""
    return Outcome(method.name, budget_s, tuple(
        simulate(table, method, seed, budget_s, concurrency, ranking) for seed in seeds))


def report(table: Table, outcomes: list[Outcome], budget_s: float, within: float) -> list[str]:
    """The comparison as printed lines: curves, regret, time to target and the ratio of mean
    times of each method to the first."""
    best, median = table.best, table.median
    floor = min(r.best for r in table.rows)
    target = best - within
    grid = [budget_s * f for f in (0.125, 0.25, 0.5, 0.75, 1.0)]
    lines = [f"{len(table.rows)} recorded configurations: best {best:.4f}, median {median:.4f};"
             f" target {target:.4f} (within {within:g} of the best)",
             "mean best-so-far (± SD over seeds) at seconds " + ", ".join(f"{t:.0f}" for t in grid)]
    for out in outcomes:
        cells = []
        for t in grid:
            values = [at_time(list(c), t, floor) for c in out.curves]
            cells.append(f"{statistics.fmean(values):.4f}±{statistics.pstdev(values):.4f}")
        lines.append(f"  {out.method:<24} " + "  ".join(cells))
    lines.append("normalized regret (best − best so far) ÷ (best − median), mean over seeds")
    for out in outcomes:
        regrets = [statistics.fmean((best - at_time(list(c), t, floor)) / (best - median)
                                    for c in out.curves) for t in grid]
        lines.append(f"  {out.method:<24} " + "  ".join(f"{r:>8.3f}" for r in regrets))
    base = outcomes[-1]
    base_mean = statistics.fmean(base.times_to(target))
    lines.append(f"time to target (a miss counts as the budget), ratio = {base.method} mean ÷ "
                 "this mean")
    for out in outcomes:
        times = out.times_to(target)
        mean = statistics.fmean(times)
        lines.append(f"  {out.method:<24} mean {mean:7.0f} s of {out.budget_s:.0f}, reached "
                     f"{out.hits(target)}/{len(times)}, median {statistics.median(times):.0f} s"
                     f", ratio {base_mean / mean:.2f}x")
    return lines


def main() -> None:
    """Replay the methods on one recorded table and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("space", choices=sorted(SPACES))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds (ours)")
    parser.add_argument("--baseline-factor", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--within", type=float, default=0.01)
    parser.add_argument("--variant", nargs="*", default=[], choices=sorted(VARIANTS))
    args = parser.parse_args()
    table = load_table(args.space)
    ranking_file = CURVES / f"{args.space}-ranking.json"
    ranking = json.loads(ranking_file.read_text()) if ranking_file.exists() else None
    seeds = list(range(args.seeds))
    methods = [AUTOML, *(VARIANTS[v] for v in args.variant)]
    outcomes = [replay(table, m, seeds, args.budget, args.concurrency, ranking)
                for m in methods]
    outcomes.append(replay(table, RANDOM, seeds, args.budget * args.baseline_factor,
                           args.concurrency, None))
    print("\n".join(report(table, outcomes, args.budget, args.within)))


def _tpe(**settings: Any) -> Callable[[Config], optuna.samplers.BaseSampler]:
    """The search's TPE (its startup count for a budgeted search) with other settings."""
    def make(cfg: Config) -> optuna.samplers.BaseSampler:
        startup = min(10, max(2, (cfg.search.max_trials or 12) // 3))
        return optuna.samplers.TPESampler(seed=cfg.search.seed, **{
            "n_startup_trials": startup, **settings})
    return make


_ASHA = {"sampler": "tpe", "scheduler": "asha"}
_FIFO = {"sampler": "tpe", "scheduler": "fifo"}
VARIANTS: dict[str, Method] = {
    "explore": Method("automl + explore_first", {**_ASHA, "explore_first": True},
                      ranked=True),
    "multivariate": Method("automl, TPE multivariate+group", _ASHA, ranked=True,
                           sampler=_tpe(multivariate=True, group=True)),
    "liar": Method("automl, TPE constant_liar", _ASHA, ranked=True,
                   sampler=_tpe(constant_liar=True)),
    "startup-8": Method("automl, TPE 8 startup", _ASHA, ranked=True,
                        sampler=_tpe(n_startup_trials=8)),
    "grace-2": Method("automl, ASHA grace 2", {**_ASHA, "grace_period": 2}, ranked=True),
    "rf-2": Method("automl, ASHA keep 1/2", {**_ASHA, "reduction_factor": 2}, ranked=True),
    "portfolio": Method("automl + portfolio", {**_ASHA, "portfolio": True}, ranked=True),
    "portfolio+explore": Method("automl + portfolio + explore_first", {
        **_ASHA, "portfolio": True, "explore_first": True}, ranked=True),
    "no-rank": Method("TPE+ASHA, no ranking", _ASHA),
    "fifo": Method("automl, FIFO (no early stopping)", _FIFO, ranked=True),
    "portfolio+fifo": Method("automl + portfolio, FIFO", {**_FIFO, "portfolio": True},
                             ranked=True),
    "portfolio+grace-2": Method("automl + portfolio, ASHA grace 2", {
        **_ASHA, "portfolio": True, "grace_period": 2}, ranked=True),
    "ties-1": Method("automl, ASHA ties within 1 SE", {**_ASHA, "rung_tolerance": 1.0},
                     ranked=True),
    "portfolio+ties": Method("automl + portfolio, ties within 1 SE", {
        **_ASHA, "portfolio": True, "rung_tolerance": 1.0}, ranked=True),
}
"""Changes tried against `automl` (bench/RESULTS.md records each, kept or reverted)."""


if __name__ == "__main__":
    main()
