"""`automl export RUN --candidate NAME`: which board row a combined candidate exports as."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from automl.combine.candidates import candidate_row
from automl.errors import AutomlError
from automl.runs.location import RunDir


def _run(tmp_path: Path) -> tuple[RunDir, pd.DataFrame]:
    soup = tmp_path / "run" / "combined" / "soup-0-x"
    soup.mkdir(parents=True)
    (soup / "plan.json").write_text(json.dumps({"val_accuracy": 0.89, "soup_members": ["a"]}))
    candidates = [
        {"kind": "single", "name": "trial a (selected)", "members": {"a": 1.0}},
        {"kind": "ensemble", "name": "ensemble", "members": {"a": 0.5, "b": 0.5}, "val": 0.88,
         "latency_ms": 30.0, "total_params": 2e6},
        {"kind": "soup", "name": "soup 0", "members": {"a": 0.5, "b": 0.5},
         "checkpoint": str(soup), "test": {"value": 0.867, "se": 0.011}},
    ]
    (tmp_path / "run" / "combined" / "combined.json").write_text(
        json.dumps({"candidates": candidates}))
    board = pd.DataFrame([
        {"trial_id": "a", "status": "finished", "checkpoint": "/ckpt/a", "val_accuracy": 0.87,
         "test_accuracy": 0.876, "temperature": 1.3, "best_epoch": 3, "head_lr": 1e-3},
        {"trial_id": "b", "status": "finished", "checkpoint": "/ckpt/b", "val_accuracy": 0.86,
         "test_accuracy": math.nan, "temperature": math.nan, "best_epoch": 2, "head_lr": 2e-3},
    ])
    return RunDir.at(tmp_path / "run"), board


def test_a_soup_exports_as_its_first_members_row_with_its_own_figures(tmp_path: Path) -> None:
    run, board = _run(tmp_path)
    row = candidate_row(run, board, "soup 0")
    assert row["trial_id"] == "soup-0" and row["status"] == "soup"
    assert row["checkpoint"].endswith("soup-0-x") and row["soup_members"] == "a, b"
    assert row["val_accuracy"] == 0.89 and row["test_accuracy"] == 0.867
    # The member's own temperature and epochs do not describe the soup.
    assert math.isnan(row["temperature"]) and math.isnan(row["best_epoch"])
    assert row["head_lr"] == 1e-3  # the architecture and recipe of its first member
    assert candidate_row(run, board, "trial a (selected)")["checkpoint"] == "/ckpt/a"


def test_the_ensemble_exports_as_its_members_and_its_own_figures(tmp_path: Path) -> None:
    run, board = _run(tmp_path)
    row = candidate_row(run, board, "ensemble")
    assert row["trial_id"] == "ensemble" and row["status"] == "ensemble"
    assert json.loads(row["checkpoint"]) == [
        {"name": "a", "weight": 0.5, "checkpoint": "/ckpt/a"},
        {"name": "b", "weight": 0.5, "checkpoint": "/ckpt/b"}]
    assert row["ensemble_members"] == "a × 0.50, b × 0.50" and row["val_accuracy"] == 0.88
    # No one member's recipe or figures describe it.
    assert math.isnan(row["head_lr"]) and math.isnan(row["test_accuracy"])


def test_an_unknown_name_or_no_combine_is_one_clear_line(tmp_path: Path) -> None:
    run, board = _run(tmp_path)
    with pytest.raises(AutomlError, match="known: 'trial a \\(selected\\)', 'ensemble'"):
        candidate_row(run, board, "soup 9")
    (tmp_path / "run" / "combined" / "combined.json").unlink()
    with pytest.raises(AutomlError, match="automl combine"):
        candidate_row(run, board, "soup 0")


def test_the_report_section_lists_every_candidate_and_marks_the_choice() -> None:
    from automl.combine.result import Candidate, Combination
    from automl.report.combined import section

    assert section(None) == []
    found = Combination([
        Candidate("selected", "trial a (selected)", {"a": 1.0}, 0.8, 0.9, 0.02,
                  test={"value": 0.85, "se": 0.01}),
        Candidate("ensemble", "ensemble", {"a": 0.5, "b": 0.5}, 0.85, 0.88, 0.02,
                  latency_ms=30.0, test={"value": 0.86, "se": 0.01, "gain": 0.01,
                                         "gain_se": 0.005}),
    ], "ensemble", "accuracy", 100, 100)
    page = "".join(section(found))
    assert "ensemble ←" in page and "trial a (selected)<" in page
    assert "a × 0.50, b × 0.50" in page and "+0.0100 ± 0.0050" in page
    assert Combination.from_json(found.to_json()) == found


def test_a_soup_folder_is_placed_whole_and_never_over_another(tmp_path: Path) -> None:
    from automl.combine.evaluate import _place

    built = tmp_path / "built"
    built.mkdir()
    (built / "model.safetensors").write_bytes(b"weights")
    _place(built, str(tmp_path / "run" / "soup-0"))
    assert (tmp_path / "run" / "soup-0" / "model.safetensors").read_bytes() == b"weights"
    assert not list((tmp_path / "run").glob(".*partial"))
    (built / "model.safetensors").write_bytes(b"other")
    with pytest.raises(FileExistsError):
        _place(built, str(tmp_path / "run" / "soup-0"))
    assert (tmp_path / "run" / "soup-0" / "model.safetensors").read_bytes() == b"weights"
