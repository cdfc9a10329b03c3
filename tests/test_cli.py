from __future__ import annotations

from pathlib import Path

import pytest

from automl.cli import main


def test_validate_ok_and_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = Path(__file__).resolve().parents[1] / "search_spaces/demo_vision.yaml"
    assert main(["validate", str(demo)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbones: [test_resnet]\nspace: {head_lr: {low: 1, high: 0.1}}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "space.head_lr" in err and "Traceback" not in err


def test_leaderboard_of_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "no leaderboard.csv" in capsys.readouterr().err


def test_predict_with_bad_export_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path), "x.png"]) == 2
    assert "not an export directory" in capsys.readouterr().err


def test_search_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [{name: test_resnet, weights: scratch}]\n")
    assert main(["search", str(space), "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
