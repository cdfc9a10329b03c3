"""The report's figures (`automl.report.plots`): SVG when there is data, a note when not."""

from __future__ import annotations

import pandas as pd

from automl.report import plots
from automl.runs.history import TrialRecord


def _record(trial_id: str, accs: list[float]) -> TrialRecord:
    history = [{"epoch": i + 1, "val_accuracy": a, "logged_at": 1000.0 + 10 * (i + 1)}
               for i, a in enumerate(accs)]
    return TrialRecord(trial_id, {"backbone": "m"}, history, None, 30.0, True, 1000.0)


def test_best_so_far_draws_the_running_best_or_says_there_is_none() -> None:
    svg = plots.best_so_far([_record("a", [0.5, 0.7]), _record("b", [0.6])])
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "No trial has reported an epoch yet." in plots.best_so_far([_record("c", [])])


def test_by_category_plots_scored_trials_only() -> None:
    board = pd.DataFrame({"val_accuracy": [0.9, 0.8, None], "unfreeze_depth": [0, 2, 4]})
    svg = plots.by_category(board, "unfreeze_depth", "unfrozen groups")
    assert "<svg" in svg and "unfrozen groups" in svg
    empty = plots.by_category(board.iloc[2:], "unfreeze_depth", "unfrozen groups")
    assert "No trial has a validation score yet." in empty


def test_by_category_draws_standard_error_bars_when_the_board_has_them() -> None:
    board = pd.DataFrame({"val_accuracy": [0.8, 0.9], "backbone": ["a", "b"],
                          "val_se": [0.02, 0.015]})
    with_bars = plots.by_category(board, "backbone", "backbone").count("LineCollection")
    without = plots.by_category(board.drop(columns="val_se"), "backbone", "backbone")
    assert with_bars == without.count("LineCollection") + 2  # one bar collection per value
