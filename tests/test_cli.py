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


def test_search_without_data(tmp_path: Path, in_tmp: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [{name: test_resnet, weights: scratch}]\n")
    assert main(["search", str(space), "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A search that stops on bad input may already have made its default run dir
    (`runs/…` under the current directory): keep it out of the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _ray_running() -> bool:
    import ray

    return bool(ray.is_initialized())


def test_config_problem_exits_2_before_ray(
    tmp_path: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [{name: test_resnet, weights: scratch}]\ntrain: {grad_clip: -1}\n")
    assert main(["search", str(space), "--data", str(tmp_path)]) == 2
    assert "train.grad_clip: must be > 0" in capsys.readouterr().err
    assert not _ray_running()


def test_data_problem_exits_2_before_ray(
    tmp_path: Path, in_tmp: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [{name: test_resnet, weights: scratch}]\n")
    for cls in ("top", "center"):
        for f in (image_folder / cls).iterdir():
            f.unlink()
    assert main(["search", str(space), "--data", str(image_folder)]) == 2
    assert "single class ('left')" in capsys.readouterr().err
    assert not _ray_running()


def test_bad_address_fails_fast_before_decoding(
    tmp_path: Path, in_tmp: Path, image_folder: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import automl.data.prepare

    def no_decoding(*_: object) -> None:
        raise AssertionError("images were decoded before connecting to Ray")

    monkeypatch.setattr(automl.data.prepare, "prepare_data", no_decoding)
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [{name: test_resnet, weights: scratch}]\n")
    started = time.time()
    code = main(["search", str(space), "--data", str(image_folder), "--address", "127.0.0.1:9"])
    assert code == 2 and time.time() - started < 15
    err = capsys.readouterr().err
    assert "--address 127.0.0.1:9: no Ray cluster answers at 127.0.0.1:9" in err
    assert "Traceback" not in err and not _ray_running()
    assert list((in_tmp / "runs").iterdir()) == []  # the run dir it claimed is gone again


def test_leaderboard_command_does_not_import_torch_or_ray(tmp_path: Path) -> None:
    import subprocess
    import sys

    from automl.runs.board_io import write_leaderboard
    from automl.runs.leaderboard import build_leaderboard
    from tests.test_leaderboard import STATIC, _records

    write_leaderboard(build_leaderboard(_records(), STATIC), tmp_path)
    code = ("import sys; from automl.cli import main; main(['leaderboard', sys.argv[1]]); "
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=False)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
    assert "fin" in out.stdout


def test_leaderboard_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "leaderboard.csv").write_text("a,b\n1,2\n")
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "is not an automl leaderboard" in capsys.readouterr().err


def test_a_closed_pipe_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`automl predict EXPORT folder | head`: the reader leaves early; no traceback, exit 0."""
    import sys

    import automl.cli

    def closed(_: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(automl.cli, "_run", closed)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main() swaps it for os.devnull
    assert main(["backbones"]) == 0
