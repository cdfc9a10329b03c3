"""`automl.runs.read` and the API over it, on the committed run made by an earlier automl."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import automl
from automl.runs.location import RunDir
from automl.runs.read import load_run, read_context


def test_static_json_reads_as_a_search_context_and_writes_back_the_same(old_run: Path) -> None:
    raw = json.loads((old_run / "static.json").read_text())
    context = read_context(RunDir.at(str(old_run)))
    assert context is not None
    assert context.task == "image" and context.classes == ("center", "left", "top")
    assert context.resources.workers_per_trial == 1 and context.epochs == 1
    # Same keys, same values; keys added since read as what that run did.
    assert context.to_json() == {**raw, "metric": "accuracy", "class_weights": None,
                                 "data": {**raw["data"], "duplicates": None}}


def test_a_run_without_static_json_has_no_context(tmp_path: Path) -> None:
    assert read_context(RunDir.at(str(tmp_path))) is None


def test_load_run_rebuilds_the_board_from_the_history(old_run: Path) -> None:
    run, board, records = load_run(str(old_run), None)
    assert run.local == old_run.resolve()
    assert sorted(r.trial_id for r in records) == sorted(board["trial_id"])
    assert sorted(board["status"]) == ["finished", "interrupted"]
    finished = board[board["status"] == "finished"].iloc[0]
    assert 0 <= finished["val_accuracy"] <= 1 and finished["epochs"] == 1
    assert finished["train_time_s"] > 0  # read under its old name `train_s` from the history


def test_api_reads_what_the_cli_shows(old_run: Path) -> None:
    board = automl.leaderboard(str(old_run))
    assert isinstance(board, pd.DataFrame) and len(board) == 2
    assert board.iloc[0]["status"] == "finished"  # ranked: the scored trial first
    config = automl.validate(old_run / "space.yaml")
    assert config.task == "image" and [b.name for b in config.backbones] == ["test_efficientnet"]
