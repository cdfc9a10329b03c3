"""The run history, the board's transfer/overfitting/cost columns, its formats and the HTML
report, on hand-made histories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from automl.errors import AutomlError
from automl.report import build_report, compare_runs, compare_table
from automl.runs.board_io import render, select_rows, to_markdown
from automl.runs.history import (
    TrialRecord,
    event,
    load_records,
    read_events,
    read_history,
    trial_records,
)
from automl.runs.leaderboard import COLUMNS, build_leaderboard
from automl.runs.selection import Constraints, best_trial
from automl.trial.context import SearchContext
from tests.test_leaderboard import PARAMS, STATIC, STATIC_JSON

STATIC_RES = SearchContext.from_json({**STATIC_JSON, "resources": {
    "workers_per_trial": 2, "cpus_per_worker": 1.5, "use_gpu": False}})


def _history(accs: list[float], train: list[float] | None = None, start: float = 1000.0,
             params: float = 1e6, latency: float = 5.0) -> list[dict]:
    return [{"epoch": i + 1, "val_accuracy": a, "logged_at": start + 10 * (i + 1),
             "train_accuracy": (train or accs)[i], "trainable_params": params / 2,
             "total_params": params, "latency_ms": latency, "samples_per_s": 100.0,
             "peak_memory_mb": 500.0 + i, "train_s": 5.0 * (i + 1),
             "checkpoint_path": f"/ck/{i}"} for i, a in enumerate(accs)]


def _trial(trial_id: str, backbone: str, accs: list[float], **kw: object) -> TrialRecord:
    error = kw.pop("error", None)
    ended = bool(kw.pop("ended", True))
    time_s = float(kw.pop("time_s", 30.0))  # type: ignore[arg-type]
    return TrialRecord(trial_id, {**PARAMS, "backbone": backbone}, _history(accs, **kw),  # type: ignore[arg-type]
                       error, time_s, ended, 1000.0)


def _mixed() -> list[TrialRecord]:
    return [
        _trial("scr", "m:scratch", [0.5, 0.6, 0.7]),
        _trial("neg", "m:package", [0.55, 0.65]),  # pretrained, below scratch: stopped early
        _trial("pos", "m:package", [0.8, 0.9, 0.85], train=[0.9, 1.0, 1.0]),
        _trial("nan", "m:package", [math.nan]),
        _trial("err", "m:package", [], error="TrialFailed: loss nan"),
        _trial("run", "m:package", [0.3], ended=False),
    ]


def test_statuses_transfer_gain_overfitting_and_costs() -> None:
    board = build_leaderboard(_mixed(), STATIC_RES).set_index("trial_id")
    assert sorted(board.reset_index().columns) == sorted(COLUMNS)
    assert board["status"].to_dict() == {
        "pos": "finished", "scr": "finished", "neg": "stopped", "run": "interrupted",
        "nan": "stopped", "err": "errored"}
    assert board.loc["pos", "transfer_gain"] == pytest.approx(0.2)
    assert board.loc["neg", "transfer_gain"] == pytest.approx(-0.05)
    assert bool(board.loc["neg", "negative_transfer"]) and not board.loc["pos", "negative_transfer"]
    assert pd.isna(board.loc["scr", "transfer_gain"])  # scratch trials are the baseline
    assert board.loc["pos", "overfit_gap"] == pytest.approx(0.1)
    assert board.loc["pos", "best_epoch"] == 2
    assert not board.loc["pos", "overfitting"]  # 0.1 is not above the 0.10 threshold
    assert board.loc["pos", "device_hours"] == pytest.approx(30 * 2 * 1.5 / 3600)
    assert board.loc["pos", "trainable_pct"] == 50 and board.loc["pos", "device"] == "cpu"
    assert board.loc["pos", "peak_memory_mb"] == 502 and board.loc["nan", "val_accuracy"] != 0.5
    assert pd.isna(board.loc["nan", "val_accuracy"]) and pd.isna(board.loc["err", "val_accuracy"])
    running = build_leaderboard(_mixed(), STATIC_RES, running=True)
    assert running.set_index("trial_id").loc["run", "status"] == "running"


def test_no_scratch_and_scratch_only_runs_have_no_gain() -> None:
    pretrained = build_leaderboard([_trial("a", "m:package", [0.7])], STATIC)
    assert pretrained["transfer_gain"].isna().all() and pretrained["negative_transfer"].isna().all()
    scratch = build_leaderboard([_trial("b", "m:scratch", [0.7])], STATIC)
    assert scratch["transfer_gain"].isna().all()
    assert "No pretrained trial has a from-scratch" in build_report(
        pretrained, [], {}, "t", "finished")


def test_ties_go_to_the_cheaper_trial_and_constraints_filter_selection() -> None:
    records = [_trial("big", "m:package", [0.9], params=5e6, latency=30.0, time_s=60),
               _trial("small", "m:package", [0.9], params=1e6, latency=4.0, time_s=20),
               _trial("fast", "m:package", [0.8], params=2e5, latency=1.0, time_s=20)]
    board = build_leaderboard(records, STATIC)
    assert board["trial_id"].tolist() == ["small", "big", "fast"]
    limited = build_leaderboard(records, STATIC, Constraints(max_latency_ms=2.0))
    assert best_trial(limited)["trial_id"] == "fast"
    assert limited.set_index("trial_id")["eligible"].to_dict() == {
        "fast": True, "small": False, "big": False}
    with pytest.raises(AutomlError, match="meets the constraints"):
        best_trial(build_leaderboard(records, STATIC, Constraints(max_params=10)))


def test_history_file_round_trip_resume_and_truncated_line(tmp_path: Path) -> None:
    lines = [
        event("start", "t1", params={**PARAMS, "backbone": "m:package"}),
        event("result", "t1", metrics={"epoch": 1, "val_accuracy": 0.5, "loss": math.nan,
                                       "checkpoint_path": "bucket/run/trials/t1/ck0"}),
        event("result", "t1", metrics={"epoch": 2, "val_accuracy": 0.6}),
        # the driver died; a resumed search re-ran epoch 2 from the epoch-1 checkpoint
        event("start", "t1", params={**PARAMS, "backbone": "m:package"}),
        event("result", "t1", metrics={"epoch": 2, "val_accuracy": 0.7, "time_total_s": 42}),
        event("end", "t1", error=None),
        event("start", "t2", params={**PARAMS, "backbone": "m:package"}),
    ]
    (tmp_path / "trials.jsonl").write_text("\n".join(lines) + '\n{"event": "resu')
    assert json.loads(lines[1])["metrics"]["loss"] is None  # strict JSON, no NaN
    t1, t2 = load_records(tmp_path, "s3://bucket/run")
    assert [h["val_accuracy"] for h in t1.history] == [0.5, 0.7] and t1.ended
    assert t1.history[0]["checkpoint_path"] == "s3://bucket/run/trials/t1/ck0"
    assert t1.trial_time_s == 42 and not t2.ended and t2.history == []
    # A line torn anywhere (not only the last) is skipped and counted.
    (tmp_path / "trials.jsonl").write_text("garbage\n" + lines[0] + '\n{"ev\n' + lines[6] + "\n")
    read = read_history(tmp_path / "trials.jsonl")
    assert read.torn == (1, 3) and [e["trial_id"] for e in read.events] == ["t1", "t2"]
    assert read_events(tmp_path / "trials.jsonl") == read.events
    with pytest.raises(AutomlError, match=r"no trials\.jsonl"):
        read_events(tmp_path / "missing" / "trials.jsonl")
    assert trial_records([], "x") == []


def test_formats_sort_and_top() -> None:
    board = build_leaderboard(_mixed(), STATIC_RES)
    assert select_rows(board, top=2)["trial_id"].tolist() == ["pos", "scr"]
    assert select_rows(board, sort="val_accuracy")["trial_id"].tolist()[:2] == ["run", "neg"]
    assert select_rows(board, sort="val_accuracy:desc")["trial_id"].iloc[0] == "pos"
    with pytest.raises(AutomlError, match="must be asc or desc"):
        select_rows(board, sort="val_accuracy:down")
    assert select_rows(board, sort="trial_id")["trial_id"].iloc[0] == "err"
    with pytest.raises(AutomlError, match="no column 'nope'"):
        select_rows(board, sort="nope")
    rows = json.loads(str(render(board, "json")))
    assert rows[0]["trial_id"] == "pos" and rows[-1]["error"] == "TrialFailed: loss nan"
    assert isinstance(render(board, "parquet"), bytes)
    assert "trial_id" in str(render(board, "csv")).splitlines()[0]
    markdown = str(render(board, "markdown")).splitlines()
    assert markdown[0].startswith("| rank | trial_id") and len(markdown) == 2 + len(board)
    assert to_markdown(pd.DataFrame({"a": ["x|y"]})).splitlines()[2] == "| x\\|y |"
    with pytest.raises(AutomlError, match="--format"):
        render(board, "xml")


def test_report_has_every_figure_the_board_and_the_config() -> None:
    records = _mixed()
    board = build_leaderboard(records, STATIC_RES)
    page = build_report(board, records, {"search": {"num_samples": 6}}, "automl report — r",
                        "finished")
    assert page.count("<figure>") == 7 and page.count("<svg") == 7
    assert not any(f'{a}="http' in page for a in ("src", "href")) and "<link" not in page
    assert "Negative transfer: <span class='flag'>1</span>" in page and "neg (-0.050)" in page
    assert page.count("<tr class=") == len(board) and '"num_samples": 6' in page
    assert 'class="selected"' in page and "Selected: <b>pos</b>" in page


def test_compare_two_runs() -> None:
    first = build_leaderboard(_mixed(), STATIC_RES)
    second = build_leaderboard([_trial("x", "m:scratch", [0.95])], STATIC)
    table = compare_table({"a": first, "b": second})
    assert table.loc["trial_id"].tolist() == ["pos", "x"] and table.loc["trials"].tolist() == [6, 1]
    page = compare_runs({"a": first, "b": second}, {"a": _mixed(), "b": []})
    assert "<svg" in page and "Compare: a, b" in page


def test_an_unusable_tracking_server_is_a_clear_error(tmp_path: Path) -> None:
    from automl.runs.location import RunDir
    from automl.search.tracking import tracking_callbacks

    with pytest.raises(AutomlError, match=r"cannot use the MLflow tracking URI 'http://127\.0"):
        tracking_callbacks("http://127.0.0.1:9", False, "x", RunDir.at(tmp_path))
    (tensorboard,) = tracking_callbacks(None, True, "x", RunDir.at(tmp_path))
    assert type(tensorboard).__name__ == "TBXLoggerCallback"


def test_a_test_event_scores_the_selected_row_and_the_report_says_so() -> None:
    """Validation's SE comes from its example count; the test score only from a `test`
    event in the history, on that trial's row; the report shows both and the optimism."""
    history = [{**h, "val_examples": 400} for h in _history([0.8, 0.9])]
    events = [json.loads(event("start", "a", params={**PARAMS, "backbone": "m:package"})),
              *(json.loads(event("result", "a", metrics=h)) for h in history),
              json.loads(event("end", "a")),
              json.loads(event("test", "a", accuracy=0.85, loss=0.4, examples=1000,
                               se=math.sqrt(0.85 * 0.15 / 1000)))]
    board = build_leaderboard(trial_records(events, "/run"), STATIC)
    row = board.iloc[0]
    assert row["val_se"] == pytest.approx(math.sqrt(0.9 * 0.1 / 400))
    assert row["test_accuracy"] == 0.85 and row["test_se"] == pytest.approx(0.01129, abs=1e-5)
    page = build_report(board, [], {}, "t", "finished")
    assert "<b>0.8500 ± 0.0113 </b>(selection optimism +0.0500)" in page
    assert "val_accuracy 0.9000 ± 0.0150 at epoch 2" in page
    assert "Within noise" not in page  # a single trial
    no_test = build_leaderboard(trial_records(events[:-1], "/run"), STATIC)
    assert no_test["test_accuracy"].isna().all()
    assert "No test split" in build_report(no_test, [], {}, "t", "finished")


def test_the_report_names_runners_up_within_noise() -> None:
    """0.90 vs 0.89 on 400 examples is within 2 SE of the difference; 0.90 vs 0.70 is not."""
    def run(trial_id: str, accs: list[float]) -> TrialRecord:
        record = _trial(trial_id, "m:package", accs)
        history = [{**h, "val_examples": 400} for h in record.history]
        return TrialRecord(trial_id, record.params, history, None, 30.0, True, 1000.0)

    board = build_leaderboard([run("a", [0.9]), run("b", [0.89]), run("c", [0.7])], STATIC)
    page = build_report(board, [], {}, "t", "finished")
    assert "Within noise: 1 other trial(s)" in page and "b (0.8900)" in page
    assert "c (0.7000)" not in page


def test_the_report_shows_the_selected_trials_classes_on_validation_and_test(
        tmp_path: Path) -> None:
    """The confusion matrices come from the selected checkpoint (validation) and its test
    event; classes are listed lowest recall first, under the search's metric."""
    checkpoint = tmp_path / "ck"
    checkpoint.mkdir()
    (checkpoint / "plan.json").write_text(json.dumps(
        {"classes": ["a", "b"], "val_confusion": [[40, 0], [6, 4]]}))
    history = [{**h, "val_examples": 50, "val_balanced_accuracy": 0.7,
                "val_balanced_accuracy_se": 0.08, "checkpoint_path": str(checkpoint)}
               for h in _history([0.88])]
    events = [json.loads(event("start", "a", params={**PARAMS, "backbone": "m:package"})),
              json.loads(event("result", "a", metrics=history[0])),
              json.loads(event("end", "a")),
              json.loads(event("test", "a", metric="balanced_accuracy", accuracy=0.9,
                               balanced_accuracy=0.75, macro_f1=0.8, loss=0.3, examples=100,
                               se=0.05, confusion=[[85, 5], [5, 5]]))]
    records = trial_records(events, "/run")
    context = SearchContext.from_json({**STATIC_JSON, "metric": "balanced_accuracy"})
    board = build_leaderboard(records, context)
    page = build_report(board, records, {}, "t", "finished", metric="val_balanced_accuracy")
    assert "Per class (selected trial a)" in page
    assert "<td>b</td><td>10</td><td>0.400</td><td>1.000</td><td>10</td><td>0.500</td>" in page
    assert page.index("<td>b</td><td>10</td>") < page.index("<td>a</td><td>40</td>")
    assert "Confusion matrix on test" in page and ">85</td>" in page
    assert "test balanced_accuracy<b>0.7500 ± 0.0500 </b>" in page
    assert "val_balanced_accuracy 0.7000 ± 0.0800 at epoch 1" in page
    assert "(selection optimism -0.0500)" in page
