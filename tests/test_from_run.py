"""Exporting a run's trial (`automl.export.from_run`) on the committed older run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl.errors import AutomlError
from automl.export.from_run import export_trial
from automl.runs.leaderboard import best_trial
from automl.runs.read import load_run, read_context


def test_the_export_carries_the_trial_row_data_and_search(old_run: Path, tmp_path: Path) -> None:
    run, board, _ = load_run(str(old_run), None)
    row = best_trial(board)
    out = export_trial(run, row, board, read_context(run), str(tmp_path / "exp"),
                       ("safetensors",), log=lambda _: None)
    card = (Path(out) / "README.md").read_text()
    assert f"| trial_id | {row['trial_id']} |" in card
    assert "- examples: 27 train / 9 validation" in card  # the context's data facts
    assert f"- run: `{run.location}`" in card
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    assert [c["name"] for c in manifest["checks"]] == ["safetensors"]


def test_without_a_context_it_exports_but_cannot_refit(old_run: Path, tmp_path: Path) -> None:
    run, board, _ = load_run(str(old_run), None)
    row = best_trial(board)
    out = export_trial(run, row, board, None, str(tmp_path / "bare"), ("safetensors",),
                       log=lambda _: None)
    assert "## Data" not in (Path(out) / "README.md").read_text()
    with pytest.raises(AutomlError, match="does not record where its prepared data is"):
        export_trial(run, row, board, None, str(tmp_path / "refit"), ("safetensors",),
                     refit=True, log=lambda _: None)
