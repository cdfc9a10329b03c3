from __future__ import annotations

from pathlib import Path

import pytest

from automl.errors import AutomlError, root_cause
from automl.runs.board_io import format_table
from automl.runs.history import TrialRecord
from automl.runs.leaderboard import COLUMNS, build_leaderboard
from automl.runs.selection import best_trial
from automl.trial.context import SearchContext

STATIC_JSON = {
    "task": "image", "classes": ["a", "b"],
    "backbones": {"m:package": {"name": "m", "weights": "package"},
                  "m:scratch": {"name": "m", "weights": "scratch"}},
    "preprocessing": {"m:package": {}, "m:scratch": {}},
    "epochs": 3, "seed": 0, "precision": "fp32", "grad_clip": 1.0,
}
STATIC = SearchContext.from_json(STATIC_JSON)
PARAMS = {"unfreeze_fraction": 0.5, "head_lr": 1e-3, "backbone_lr": 1e-4, "weight_decay": 0.0,
          "batch_size": 32}


def _epochs(accs: list[float], ckpt_at: list[int]) -> list[dict]:
    return [{"epoch": i + 1, "val_accuracy": a, "train_s": 10.0 * (i + 1), "startup_s": 5.0,
             "unfreeze_depth": 4, "checkpoint_path": f"/ck/{i}" if i in ckpt_at else None}
            for i, a in enumerate(accs)]


def _records() -> list[TrialRecord]:
    return [
        TrialRecord("stop", {**PARAMS, "backbone": "m:scratch"}, _epochs([0.5], [0]), None, 9),
        TrialRecord("err", {**PARAMS, "backbone": "m:package"}, [], "TrialFailed: loss nan", 3),
        TrialRecord("fin", {**PARAMS, "backbone": "m:package"},
                    _epochs([0.7, 0.9, 0.8], [0, 1]), None, 40),
    ]


def test_ranking_status_and_best_checkpoint() -> None:
    board = build_leaderboard(_records(), STATIC)
    assert list(board.columns) == COLUMNS
    assert board["trial_id"].tolist() == ["fin", "stop", "err"]
    assert board["rank"].tolist() == [1, 2, 3]
    assert board["status"].tolist() == ["finished", "stopped", "errored"]
    top = board.iloc[0]
    assert top["val_accuracy"] == 0.9 and top["best_epoch"] == 2 and top["checkpoint"] == "/ck/1"
    assert bool(board.iloc[1]["pretrained"]) is False
    assert board.iloc[2]["error"] == "TrialFailed: loss nan"
    assert best_trial(board)["trial_id"] == "fin"
    assert "err errored: TrialFailed" in format_table(board)


def test_best_trial_errors() -> None:
    board = build_leaderboard(_records()[1:2], STATIC)
    with pytest.raises(AutomlError, match="no trial produced a checkpoint"):
        best_trial(board)
    with pytest.raises(AutomlError, match="no trial 'zzz'"):
        best_trial(board, "zzz")


def test_root_cause_finds_the_worker_error() -> None:
    wrapped = RuntimeError("Training failed.\nTraceback\n  File x\nTrialFailed: loss became nan")
    assert root_cause(wrapped) == "TrialFailed: loss became nan"


def test_root_cause_unwraps_the_driver_reraise() -> None:
    wrapped = RuntimeError("Trial failed\nTrialFailed: RuntimeError: value cannot be converted")
    assert root_cause(wrapped) == "RuntimeError: value cannot be converted"
    nan = RuntimeError("x\nautoml.errors.TrialFailed: TrialFailed: training loss became nan")
    assert root_cause(nan) == "TrialFailed: training loss became nan"


def test_trial_tune_forgot_ends_as_interrupted(tmp_path: Path) -> None:
    """A driver killed before Tune's snapshot included a started trial: the resumed search's
    end closes that record (it can never continue) and leaves the trials Tune knows alone."""
    from types import SimpleNamespace

    from automl.runs.history import event, load_records
    from automl.runs.layout import HISTORY_FILE
    from automl.runs.location import RunDir
    from automl.search.tracking import HistoryWriter

    run = RunDir.at(tmp_path, "--run-dir")
    lines = [event("start", t, params={"backbone": "m:package", **PARAMS}) for t in "abc"]
    lines += [event("result", "b", metrics={"epoch": 1, "val_accuracy": 0.5}),
              event("end", "a", error=None)]
    (tmp_path / HISTORY_FILE).write_text("\n".join(lines) + "\n")
    known = [SimpleNamespace(trial_id=t) for t in "ac"]
    HistoryWriter(run).on_experiment_end(known)
    records = {r.trial_id: r for r in load_records(tmp_path, str(tmp_path))}
    assert records["b"].ended and records["b"].cut == "driver_lost"
    assert not records["c"].ended  # Tune knows it: still resumable
    board = build_leaderboard(list(records.values()), STATIC).set_index("trial_id")
    assert board.loc["b", "status"] == "interrupted" and board.loc["b", "epochs"] == 1
