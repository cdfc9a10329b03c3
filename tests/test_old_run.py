"""A run dir written by an earlier automl (tests/fixtures/old_run, made by
tests/fixtures/make_old_run.py) is still read, reported, exported and resumed: resume is what
proves that the module paths Ray pickled (trainable, callbacks, searcher) still resolve."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from automl.cli import main


def test_old_run_leaderboard(old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(old_run)]) == 0
    out = capsys.readouterr().out
    assert "test_efficientnet" in out and "finished" in out


def test_old_run_report(old_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(old_run), "--out", str(out)]) == 0
    assert "test_efficientnet" in out.read_text()


def test_old_run_export(old_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert main(["export", str(old_run), "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "manifest.json").is_file()


@pytest.mark.integration
def test_old_run_resumes(old_run: Path) -> None:
    before = pd.read_csv(old_run / "leaderboard.csv")
    assert sorted(before["status"])[0] == "finished" and len(before) <= 2
    try:
        assert main(["search", "--resume", str(old_run)]) == 0
    finally:
        import ray

        ray.shutdown()
    board = pd.read_csv(old_run / "leaderboard.csv")
    assert len(board) == 2 and set(board["status"]) == {"finished"}, board.to_string()
    assert (old_run / "export" / "model.safetensors").is_file()
