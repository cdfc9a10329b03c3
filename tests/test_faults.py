"""Failures on an embedded local Ray: a training worker SIGKILLed mid-trial. Nothing completed
may be lost, and the restarted trial must end where an uninterrupted one does."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from automl.api import SearchResult, run_search
from automl.config.parse import from_dict
from automl.config.schema import Config

pytestmark = pytest.mark.integration


def _config(images: Path, cache: Path) -> Config:
    return from_dict({
        "task": "image",
        "data": {"path": str(images), "val_fraction": 0.25, "image_size": 96,
                 "cache_dir": str(cache)},
        "backbones": [{"name": "test_resnet", "weights": "scratch"}],
        "space": {"unfreeze_fraction": 1.0, "head_lr": 0.01, "backbone_lr": 0.001,
                  "batch_size": 8},
        "train": {"epochs": 5, "seed": 0, "max_restarts": 2},
        "search": {"num_samples": 1},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1},
    })


def _train_workers() -> list[int]:
    """PIDs of processes that train on this machine (their title names the actor): Ray Train
    workers, or Tune trial processes, where single-worker trials train."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            if title.startswith((b"ray::RayTrainWorker", b"ray::ImplicitFunc")):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_killed_worker_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    import ray

    from tests.conftest import write_image_folder

    images = write_image_folder(tmp_path / "images", per_class=60)
    config = _config(images, tmp_path / "cache")
    try:
        straight = run_search(config, run_dir=tmp_path / "straight", log=lambda _: None)

        results: list[SearchResult] = []
        search = threading.Thread(target=lambda: results.append(
            run_search(config, run_dir=tmp_path / "killed", log=lambda _: None)))
        started = time.time()
        search.start()
        before = set(_train_workers())  # exited actors of the first search may linger
        killed = None
        while search.is_alive() and killed is None and time.time() - started < 300:
            # Epoch 1's checkpoint is complete on storage; an epoch takes ≈ 2 s, so 0.5 s later
            # it is registered and epoch 2 is running.
            if list((tmp_path / "killed" / "trials").glob("*/checkpoint_20*/train_state.pt")):
                time.sleep(0.5)
                workers = [pid for pid in _train_workers() if pid not in before]
                if workers:
                    killed = workers[0]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        search.join(timeout=600)
    finally:
        ray.shutdown()
    assert killed is not None, "the trial finished before a worker could be killed"
    (result,) = results
    row, reference = result.leaderboard.iloc[0], straight.leaderboard.iloc[0]
    assert row["status"] == "finished" and row["epochs"] == 5
    assert row["restarts"] == 1 and reference["restarts"] == 0
    assert row["val_accuracy"] == reference["val_accuracy"]
    assert row["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-6)
    assert result.export_dir is not None
    assert (Path(result.export_dir) / "model.safetensors").is_file()


RESUME_SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 96}
backbones: [{name: test_resnet, weights: scratch}]
space: {unfreeze_fraction: 1.0, head_lr: {low: 0.001, high: 0.1, log: true}, batch_size: 8}
train: {epochs: 3, seed: 0}
search: {num_samples: 3, seed: 0, grace_period: 3}  # no early stops: all finish
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1}
"""


def test_killed_search_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capfd: pytest.CaptureFixture[str]) -> None:
    """SIGKILL the `automl search` process once the first trial finished and the second has
    a checkpoint; `--resume` keeps the first, continues the second, samples the third."""
    import json
    import subprocess
    import sys

    import pandas as pd

    from automl.cli import main
    from tests.conftest import write_image_folder

    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "images", per_class=60)
    Path("space.yaml").write_text(RESUME_SPACE)
    proc = subprocess.Popen([sys.executable, "-m", "automl.cli", "search", "space.yaml",
                             "--data", "images", "--run-dir", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        finished = [ln.split()[1] for ln in lines if " finished |" in ln]
        if finished and any(" epoch 1/3 " in ln and ln.split()[1] != finished[0]
                            for ln in lines):
            time.sleep(1.0)  # let the epoch-1 checkpoint register
            proc.kill()
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    first = finished[0]
    first_history = (Path("run") / "tune" / first / "result.json").read_text()

    try:
        assert main(["search", "--resume", "run"]) == 0
    finally:
        import ray

        ray.shutdown()
    out, _ = capfd.readouterr()
    assert "(resumed)" in out and "MiB)" in out
    board = pd.read_csv(Path("run") / "leaderboard.csv")
    assert len(board) == 3 and board["trial_id"].is_unique
    shown = board[["trial_id", "status", "epochs", "restarts", "val_accuracy"]].to_string()
    assert set(board["status"]) == {"finished"} and list(board["epochs"]) == [3, 3, 3], shown
    by_id = board.set_index("trial_id")
    assert by_id.loc[first, "restarts"] == 0
    # The finished trial was not run again: its Tune history is unchanged.
    assert (Path("run") / "tune" / first / "result.json").read_text() == first_history
    assert len([json.loads(x) for x in first_history.splitlines() if x.strip()]) == 3
    # The in-flight one continued from its checkpoint instead of starting over.
    assert sorted(by_id["restarts"].tolist()) == [0, 0, 1], shown


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) once the first of two trials finished:
    exit 130, the board keeps the finished trial, marks the other interrupted, and the
    message names the resume command."""
    import subprocess
    import sys

    import pandas as pd

    from tests.conftest import write_image_folder

    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "images", per_class=60)
    Path("space.yaml").write_text(RESUME_SPACE.replace("num_samples: 3", "num_samples: 2"))
    proc = subprocess.Popen([sys.executable, "-m", "automl.cli", "search", "space.yaml",
                             "--data", "images", "--run-dir", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if " finished |" in line:
            started = time.time()
            os.killpg(proc.pid, signal.SIGINT)
            break
    lines += proc.stdout.readlines()
    proc.wait(timeout=120)
    stopped_in = time.time() - started
    text = "".join(lines)
    assert proc.returncode == 130, text
    assert f"automl search --resume {tmp_path / 'run'}" in text
    assert "Traceback" not in text
    board = pd.read_csv(Path("run") / "leaderboard.csv")
    # The second trial is interrupted, or was not yet sampled when the signal came.
    assert sorted(board["status"])[:1] == ["finished"], board.to_string()
    assert set(board["status"]) <= {"finished", "interrupted"}, board.to_string()
    assert board.loc[board["status"] == "finished", "epochs"].item() == 3
    print(f"Ctrl-C to exit: {stopped_in:.1f} s")
