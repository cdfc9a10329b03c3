"""Time budgets: parsing, the Tune stopper, the limiter that starts no hopeless trial, and how
trials cut by the budget show on the board."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from automl.config import parse as config
from automl.config.durations import format_duration, parse_duration
from automl.config.schema import ResourcesConfig
from automl.errors import ConfigError
from automl.runs.history import event, trial_records
from automl.runs.leaderboard import build_leaderboard, outcome
from automl.search import tune as search
from automl.search.budget import TimeBudget
from tests.test_leaderboard import PARAMS, STATIC, _epochs
from tests.test_search import _Counter


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1.5h", 5400), (600, 600),
    ("600", 600), (" 10 m ", 600), ("1d", 86400),
])
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "30x", "m", "", "-5m", 0, True, "10m tomorrow"])
def test_bad_durations_say_what_is_accepted(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"duration|positive"):
        parse_duration(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 65, 600, 3900, -3)] == [
        "5s", "1m05s", "10m00s", "1h05m", "0s"]


def test_config_budget_and_trial_count(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("backbones: [test_resnet]\nsearch: {time_budget: 10m}\n")
    cfg = config.load(path)
    assert cfg.search.budget_s == 600 and cfg.search.max_trials is None  # until spent
    assert config.load(path, {"search.num_samples": 5}).search.max_trials == 5  # a cap
    path.write_text("backbones: [test_resnet]\n")
    assert config.load(path).search.max_trials == 8 and config.load(path).search.budget_s is None
    path.write_text("backbones: [test_resnet]\nsearch: {time_budget: ten minutes}\n")
    with pytest.raises(ConfigError, match=r"search.time_budget: expected a duration like 30m"):
        config.load(path)


def test_stopper_spends_the_budget_and_a_restored_one_keeps_what_was_left(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("automl.search.budget.time.monotonic", lambda: clock[0])
    budget = TimeBudget(60, spent=10)  # 10 s went into preparing the data
    assert not budget.stop_all() and budget.left() == 50
    clock[0] += 30
    assert not budget.stop_all() and budget.left() == 20
    restored = pickle.loads(pickle.dumps(budget))
    clock[0] += 1000  # the driver was down: that time is not counted
    assert not restored.stop_all() and restored.left() == 20
    clock[0] += 20
    assert restored.expired and not restored.stop_all()  # spent: the trials end themselves
    clock[0] += restored.grace  # a trial stuck in an epoch past the grace is stopped by Tune
    assert restored.stop_all()
    assert budget.stop_all()  # the original saw all of it


def test_limiter_starts_no_trial_that_cannot_reach_a_first_result(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("automl.search.budget.time.monotonic", lambda: clock[0])
    monkeypatch.setattr(search.ray, "cluster_resources", lambda: {"CPU": 4.0})
    budget = TimeBudget(100)
    limiter = search.ClusterSizedLimiter(_Counter(), ResourcesConfig(1, 1.0), 4, budget)
    assert limiter.suggest("a") == {"x": 1}  # nothing known yet: try
    limiter.on_trial_result("a", {"training_iteration": 1, "time_total_s": 30.0})
    clock[0] = 60  # 40 s left > 30 s to a first result
    assert limiter.suggest("b") == {"x": 2}
    clock[0] = 75  # 25 s left
    assert limiter.suggest("c") == "FINISHED"


def test_trials_cut_by_the_budget_are_out_of_time_and_selectable() -> None:
    events = [
        event("start", "fin", params={**PARAMS, "backbone": "m:package"}),
        *[event("result", "fin", metrics=m) for m in _epochs([0.6, 0.7, 0.8], [0, 1, 2])],
        event("end", "fin", error=None),
        event("start", "cut", params={**PARAMS, "backbone": "m:package"}),
        *[event("result", "cut", metrics=m) for m in _epochs([0.85], [0])],
        event("end", "cut", error=None, cut="time_budget"),
        event("start", "asha", params={**PARAMS, "backbone": "m:scratch"}),
        *[event("result", "asha", metrics=m) for m in _epochs([0.3], [0])],
        event("end", "asha", error=None),
    ]
    import json

    board = build_leaderboard(trial_records([json.loads(e) for e in events], "/run"), STATIC)
    status = dict(zip(board["trial_id"], board["status"], strict=True))
    assert status == {"cut": "out_of_time", "fin": "finished", "asha": "stopped"}
    assert board.iloc[0]["trial_id"] == "cut" and board.iloc[0]["checkpoint"] == "/ck/0"
    assert "1 cut by the time budget" in outcome(board)
