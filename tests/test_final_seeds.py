"""`search.final_seeds`: the top configurations train again with more seeds, their time is
reserved from the budget up front, and selection compares the mean over seeds, exporting the
seed closest to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl.config import parse
from automl.config.schema import SearchConfig
from automl.errors import ConfigError
from automl.runs.history import TrialRecord
from automl.runs.leaderboard import build_leaderboard
from automl.runs.selection import best_trial, config_id
from automl.search.final_seeds import repeat_points, reserved_fraction
from automl.trial.context import SearchContext, make_plan
from tests.test_leaderboard import PARAMS, STATIC_JSON

STATIC = SearchContext.from_json(STATIC_JSON)


def _trial(trial_id: str, head_lr: float, accuracy: float, seed: int | None = None
           ) -> TrialRecord:
    params = {**PARAMS, "backbone": "m:package", "head_lr": head_lr}
    if seed is not None:
        params["seed"] = seed
    history = [{"epoch": 1, "val_accuracy": accuracy, "val_examples": 400,
                "checkpoint_path": f"/ck/{trial_id}"}]
    return TrialRecord(trial_id, params, history, None, 10.0, True)


def test_the_budget_keeps_the_phases_share() -> None:
    assert reserved_fraction(SearchConfig()) == 0.0
    assert reserved_fraction(SearchConfig(num_samples=12, final_seeds=3, final_top_k=3)) \
        == pytest.approx(6 / 18)
    assert reserved_fraction(SearchConfig(time_budget="1h", final_seeds=3)) == 0.2


def test_the_top_distinct_configurations_get_the_next_seeds() -> None:
    records = [_trial("a", 1e-3, 0.9), _trial("b", 1e-3, 0.88), _trial("c", 3e-3, 0.85),
               _trial("d", 1e-2, 0.80)]
    board = build_leaderboard(records, STATIC)
    points = repeat_points(board, records, SearchConfig(final_seeds=3, final_top_k=2), 0)
    assert [(p["head_lr"], p["seed"]) for p in points] == [
        (1e-3, 1), (1e-3, 2), (3e-3, 1), (3e-3, 2)]  # b repeats a: one configuration
    assert make_plan(points[0], STATIC).seed == 1 and make_plan(PARAMS | {
        "backbone": "m:package"}, STATIC).seed == 0


def test_selection_compares_means_and_exports_the_seed_closest_to_it() -> None:
    records = [
        _trial("lucky", 1e-3, 0.90), _trial("lucky_s1", 1e-3, 0.80, seed=1),
        _trial("lucky_s2", 1e-3, 0.82, seed=2),
        _trial("steady", 3e-3, 0.87), _trial("steady_s1", 3e-3, 0.85, seed=1),
        _trial("steady_s2", 3e-3, 0.86, seed=2),
        _trial("single", 1e-2, 0.88),  # not repeated: ranks after the repeated ones
    ]
    board = build_leaderboard(records, STATIC)
    assert board["trial_id"].tolist()[0] == "steady_s2"
    assert set(board["trial_id"].tolist()[1:3]) == {"steady_s1", "steady"}
    assert best_trial(board)["trial_id"] == "steady_s2"
    top = board.iloc[0]
    assert top["seed_runs"] == 3 and top["seed_mean"] == pytest.approx(0.86)
    assert top["seed_se"] == pytest.approx(0.01 / 3 ** 0.5)
    assert board.iloc[-1]["trial_id"] == "single" and board.iloc[-1]["seed_runs"] != 3
    assert top["config_id"] == config_id(records[3].params)


def test_a_seed_run_twice_counts_once() -> None:
    """TPE may suggest the winner twice with the same seed: the mean is over seeds."""
    records = [_trial("a", 1e-3, 0.90), _trial("a_again", 1e-3, 0.90),
               _trial("a_s1", 1e-3, 0.80, seed=1)]
    top = build_leaderboard(records, STATIC).iloc[0]
    assert top["seed_runs"] == 2 and top["seed_mean"] == pytest.approx(0.85)
    assert top["seed_se"] == pytest.approx(0.05)


def test_final_seeds_is_validated(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("backbones: [test_resnet]\nsearch: {final_seeds: 1, final_top_k: 0}\n")
    with pytest.raises(ConfigError) as info:
        parse.load(space)
    assert "search.final_seeds: must be 0 (off) or at least 2" in str(info.value)
    assert "search.final_top_k: must be >= 1" in str(info.value)
