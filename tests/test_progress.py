"""Live progress lines (`automl.search.progress`), driven as Tune drives the callback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from automl.search.progress import ProgressPrinter


def _trial(trial_id: str, last: dict[str, Any] | None = None, **extra: Any) -> Any:
    return SimpleNamespace(trial_id=trial_id, config={"backbone": "lite0", "head_lr": 0.0031},
                           last_result=last or {}, **extra)


def test_lines_count_finished_stopped_and_errored_trials_with_the_best(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    printer = ProgressPrinter(epochs=2, num_samples=3, log_dir=tmp_path / "logs")
    a, b = _trial("a", {"epoch": 2}), _trial("b", {"epoch": 1})
    printer.on_trial_start(0, [], a)
    printer.on_trial_start(0, [], b)
    printer.on_trial_result(0, [], a, {"epoch": 1, "val_accuracy": 0.5})
    printer.on_trial_result(0, [], b, {"epoch": 1, "val_accuracy": 0.75})
    printer.on_trial_complete(0, [], a)
    printer.on_trial_complete(0, [], b)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nValueError: lr overflow\n")
    c = _trial("c", error_file=str(error_file))
    printer.on_trial_start(0, [], c)
    printer.on_trial_error(0, [], c)
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == "start a lite0 head_lr=0.0031"
    assert lines[2].startswith("a epoch 1/2 val_accuracy 0.5000 | 2 running")
    assert lines[3].endswith("best 0.7500 (b lite0)")
    assert lines[4].startswith("a finished | 1 running, 1 finished, 0 stopped early")
    assert lines[5].startswith("b stopped early by ASHA after 1 epoch(s)")
    assert lines[7].startswith("c errored: ValueError: lr overflow | 0 running, 1 finished, "
                               "1 stopped early, 1 errored of 3 (3 done)")
    saved = tmp_path / "logs" / "c.error.txt"
    assert lines[8] == f"  full error: {saved}" and "lr overflow" in saved.read_text()


def test_a_start_line_names_only_what_was_sampled(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The space's fixed knobs are printed once in the header, not on every start line."""
    printer = ProgressPrinter(epochs=2, num_samples=1, log_dir=tmp_path / "logs",
                              fixed=frozenset({"lr_schedule"}))
    trial = SimpleNamespace(trial_id="a", last_result={}, config={
        "backbone": "lite0", "head_lr": 0.0031, "lr_schedule": "cosine"})
    printer.on_trial_start(0, [], trial)
    assert capsys.readouterr().out.split("] ", 1)[1].strip() == "start a lite0 head_lr=0.0031"
