"""A real tiny search on an embedded local Ray: Tune + Optuna + ASHA over TorchTrainer trials."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from automl.cli import main

pytestmark = pytest.mark.integration

SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32}
backbones:
  - {name: test_resnet, weights: scratch}
  - {name: test_efficientnet, weights: scratch}
space:
  unfreeze_fraction: {choices: [0.0, 1.0]}
  head_lr: {choices: [0.003, 1.0e38]}    # 1e38 overflows AdamW: an errored trial
  backbone_lr: {low: 1.0e-4, high: 1.0e-3, log: true}
  batch_size: 8
train: {epochs: 2, seed: 0}
search: {num_samples: 4, seed: 3, grace_period: 1, reduction_factor: 2}
resources: {workers_per_trial: 1, cpus_per_worker: 1}
"""


@pytest.fixture(scope="module")
def ray_cleanup() -> object:
    yield None
    import ray

    ray.shutdown()


def test_tiny_search_end_to_end(
    image_folder: Path, tmp_path: Path, ray_cleanup: object, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    run_dir = tmp_path / "run"
    assert main(["search", str(space), "--data", str(image_folder), "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "start " in out and "epoch 1/2 val_accuracy" in out and "Leaderboard:" in out

    board = pd.read_csv(run_dir / "leaderboard.csv")
    for column in ("rank", "trial_id", "status", "backbone", "pretrained", "unfreeze_depth",
                   "head_lr", "backbone_lr", "val_accuracy", "epochs", "train_time_s",
                   "trainable_params", "checkpoint", "seed", "startup_s"):
        assert column in board.columns
    assert len(board) == 4
    assert board["rank"].tolist() == [1, 2, 3, 4]
    errored = board[board["status"] == "errored"]
    assert len(errored) >= 1 and errored["error"].str.len().gt(10).all()
    assert not errored["error"].str.startswith("TrialFailed: RuntimeError").any()
    ok = board[board["status"] != "errored"]
    assert len(ok) >= 1 and ok["val_accuracy"].between(0, 1).all()
    assert ok["val_accuracy"].is_monotonic_decreasing
    assert (board["head_lr"][board["status"] == "errored"] == 1e38).all()

    assert main(["leaderboard", str(run_dir)]) == 0
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "exp"), str(image_folder / "top")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12
    assert {line.split("\t")[1] for line in lines} <= {"center", "left", "top"}


DDP_SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32}
backbones: [{name: test_resnet, weights: scratch}]
space: {unfreeze_fraction: 0.6, head_lr: 0.003, backbone_lr: 0.001, batch_size: 4}
train: {epochs: 1}
search: {num_samples: 1}
resources: {workers_per_trial: 2, cpus_per_worker: 1}
"""

TEXT_SPACE = """
task: text
data: {val_fraction: 0.25}
backbones:
  - {name: BERT, weights: "file:BERT"}
  - {name: BERT, weights: scratch}
space:
  unfreeze_fraction: {choices: [0.0, 1.0]}
  head_lr: 0.01
  backbone_lr: 0.001
  lp_ft_epochs: {choices: [0, 1]}
  pooling: {choices: [mean, cls]}
  max_length: 16
  batch_size: 8
train: {epochs: 2}
search: {num_samples: 3, seed: 1}
"""


def test_ddp_trial_with_two_workers(
    image_folder: Path, tmp_path: Path, ray_cleanup: object
) -> None:
    """Two Ray Train workers (DDP, gloo) in one trial: sharded data, all-reduced accuracy."""
    from automl.api import run_search

    space = tmp_path / "ddp.yaml"
    space.write_text(DDP_SPACE)
    result = run_search(space, data=str(image_folder), run_dir=tmp_path / "run")
    row = result.leaderboard.iloc[0]
    assert row["status"] == "finished", row["error"]
    assert 0.0 <= row["val_accuracy"] <= 1.0
    # All 9 validation images counted once across both ranks: accuracy is a multiple of 1/9.
    assert abs(row["val_accuracy"] * 9 - round(row["val_accuracy"] * 9)) < 1e-6
    assert result.export_dir is not None


def test_tiny_text_search(
    tiny_bert: Path, text_csv: Path, tmp_path: Path, ray_cleanup: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    space = tmp_path / "text.yaml"
    space.write_text(TEXT_SPACE.replace("BERT", str(tiny_bert)))
    run_dir = tmp_path / "run"
    assert main(["search", str(space), "--data", str(text_csv), "--run-dir", str(run_dir)]) == 0
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert len(board) == 3 and (board["status"] != "errored").all(), board["error"].tolist()
    assert set(board["layer_groups"]) == {3}
    capsys.readouterr()
    assert main(["predict", str(run_dir / "export"), "the film was great", "awful and dull"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[1] in {"pos", "neg"} for line in lines)
