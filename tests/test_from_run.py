"""Exporting a run's trial (`automl.export.from_run`) on the committed older run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl.errors import AutomlError
from automl.export.from_run import export_trial
from automl.runs.read import load_run, read_context
from automl.runs.selection import best_trial


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


EXPORT_ON_RAY = """
import json, sys
from automl.errors import AutomlError
from automl.export.from_run import export_trial
from automl.runs.selection import best_trial
from automl.runs.read import load_run, read_context
from automl.search import ray_session

ray_session.init_ray(None)
run, board, _ = load_run(sys.argv[1], None)
row, lines = best_trial(board), []
out = export_trial(run, row, board, read_context(run), sys.argv[2], ("safetensors", "onnx"),
                   log=lines.append, on_ray=True)
try:
    export_trial(run, row, board, read_context(run), sys.argv[3], ("safetensors",),
                 log=lines.append, on_ray=True)
    error = None
except AutomlError as exc:
    error = str(exc)
print(json.dumps({"out": out, "lines": lines, "error": error,
                  "driver_loaded_onnxruntime": "onnxruntime" in sys.modules}))
"""


@pytest.mark.integration
def test_the_search_export_converts_and_checks_in_a_ray_task(old_run: Path, tmp_path: Path
                                                             ) -> None:
    """The driver never loads ONNX Runtime (the check runs in the task), the per-format lines
    still print, and an error in the task arrives as one line."""
    import subprocess
    import sys

    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("keep")
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_ON_RAY, str(old_run), str(tmp_path / "exp"),
         str(users)], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (Path(result["out"]) / "model.onnx").is_file()
    assert any(line.startswith("  onnx: model.onnx (max |Δ logit|") for line in result["lines"])
    assert result["driver_loaded_onnxruntime"] is False
    assert "\n" not in result["error"] and str(users) in result["error"]
    assert (users / "notes.txt").read_text() == "keep"
