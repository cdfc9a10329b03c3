"""Repeated seeds at the end of a search (`search.final_seeds: N`): the top K configurations
(`search.final_top_k`) train again with N − 1 more seeds, and selection compares their mean
validation score, not the one lucky seed that put them on top (the board's `seed_mean`;
`automl.runs.leaderboard.rank`). The exported trial is the seed closest to the winner's mean.

Its time is reserved from the time budget up front: with `num_samples` in proportion to the
extra trials, without it `RESERVE_WITHOUT_TRIAL_COUNT` of the budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from automl.config.schema import Config, SearchConfig
from automl.runs.history import TrialRecord
from automl.runs.selection import config_id

if TYPE_CHECKING:
    from automl.runs.location import RunDir
    from automl.search.budget import TimeBudget
    from automl.trial.context import SearchContext

RESERVE_WITHOUT_TRIAL_COUNT = 0.2
SEED_PARAM = "seed"
"""The parameter a final-seeds trial carries (`make_plan` reads it over `train.seed`)."""


def enabled(search: SearchConfig) -> bool:
    """True when the search ends with a final-seeds phase."""
    return search.final_seeds >= 2


def extra_trials(search: SearchConfig) -> int:
    """Trials the phase adds: K configurations × (N − 1) more seeds."""
    return search.final_top_k * (search.final_seeds - 1) if enabled(search) else 0


def reserved_fraction(search: SearchConfig) -> float:
    """The share of the time budget kept for the phase."""
    extra = extra_trials(search)
    if not extra:
        return 0.0
    if search.max_trials:
        return extra / (search.max_trials + extra)
    return RESERVE_WITHOUT_TRIAL_COUNT


def repeat_points(board: pd.DataFrame, records: list[TrialRecord], search: SearchConfig,
                base_seed: int) -> list[dict[str, Any]]:
    """The phase's trials: the board's top K distinct configurations (eligible, with a
    checkpoint, in rank order), each with seeds base + 1 … base + N − 1."""
    params = {r.trial_id: r.params for r in records}
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    ranked = board[board["eligible"].astype(bool) & board["checkpoint"].notna()
                   & (board["status"] != "errored")]
    for trial_id in ranked["trial_id"]:
        trial = params.get(str(trial_id))
        if trial is None or (key := config_id(trial)) in seen:
            continue
        seen.add(key)
        chosen.append({k: v for k, v in trial.items() if k != SEED_PARAM})
        if len(chosen) == search.final_top_k:
            break
    return [{**trial, SEED_PARAM: base_seed + i}
            for trial in chosen for i in range(1, search.final_seeds)]


def run_final_seeds(cfg: Config, context: SearchContext, datasets: dict[str, Any],
                    run: RunDir, concurrency: int, records: list[TrialRecord],
                    resume: bool, budget: TimeBudget | None, log: Any) -> list[TrialRecord]:
    """Repeat the top configurations of a finished search with more seeds (a Tune
    experiment of its own); returns every trial's record, the new ones included."""
    from automl.runs.leaderboard import build_leaderboard
    from automl.search.tune import run_seed_trials

    points = repeat_points(build_leaderboard(records, context), records, cfg.search,
                           cfg.train.seed)
    if not points:
        return records
    configs = len(points) // (cfg.search.final_seeds - 1)
    log(f"final seeds: {configs} configuration(s) × {cfg.search.final_seeds - 1} more "
        f"seed(s) ({len(points)} trials); selection then compares their mean")
    return run_seed_trials(cfg, context, datasets, run, concurrency, points, resume, budget)
