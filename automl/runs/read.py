"""Reading a run dir — finished, interrupted, still running, local or remote: its board,
its HTML report, several runs side by side, and exports of its trials. Rebuilt from the run's
history (`trials.jsonl`) and shared facts (`static.json`), so none of it needs Ray.

The report (matplotlib) and export (torch, ONNX) are imported inside the functions that use
them: `automl leaderboard` reads a board without importing either.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import paths, storage
from automl.combine.result import COMBINED_JSON, Combination
from automl.errors import AutomlError
from automl.ownership import check_export_target, write_atomic
from automl.runs.board_io import read_leaderboard, write_leaderboard
from automl.runs.history import driver_active, read_history, trial_records
from automl.runs.layout import (
    CONFIG_FILE,
    CONTEXT_FILE,
    HISTORY_FILE,
    LEADERBOARD_CSV,
    LEADERBOARD_PARQUET,
    REPORT_FILE,
    STATE_FILE,
)
from automl.runs.leaderboard import build_leaderboard
from automl.runs.location import RunDir
from automl.runs.selection import Constraints, best_trial, objective_column, rank
from automl.trial.context import SearchContext

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from automl.runs.history import TrialRecord


def leaderboard(run_dir: str | Path, constraints: Constraints | None = None) -> pd.DataFrame:
    """The ranked leaderboard of a search (local path or storage URI), rebuilt from its
    history: works on finished, interrupted, still-running and remote runs. `constraints`
    (max params / latency) decide which trials are eligible for selection."""
    return load_run(run_dir, constraints)[1]


def report(run_dir: str | Path, out: str | Path | None = None,
           constraints: Constraints | None = None) -> str:
    """Write the run's self-contained HTML report (default `RUN/report.html`); returns
    where it went. Works on finished, interrupted, running and remote runs."""
    run, board, records = load_run(run_dir, constraints)
    return write_report(run, board, records, constraints, out)


def compare(run_dirs: list[str | Path] | list[str], out: str | Path | None = None) -> str:
    """The selected configurations of several runs side by side (text); with `out`, also an
    HTML page with their best-so-far curves."""
    from automl.report import compare_runs, compare_table

    if len(run_dirs) < 2:
        raise AutomlError("compare needs at least two run dirs")
    loaded = {str(r): load_run(r, None) for r in run_dirs}
    boards = {name: board for name, (_, board, _) in loaded.items()}
    text = compare_table(boards).to_string(float_format=lambda v: f"{v:.4g}")
    if out:
        target = paths.local_path(out, "--out")
        write_atomic(target, compare_runs(boards, {n: r for n, (_, _, r) in loaded.items()}))
        text += f"\n\ncomparison written to {target}"
    return text


def load_run(run_dir: str | Path, constraints: Constraints | None
             ) -> tuple[RunDir, pd.DataFrame, list[TrialRecord]]:
    """A run dir (fetched when remote), its ranked board and its trial records."""
    run = RunDir.at(run_dir, "run dir")
    run.fetch(HISTORY_FILE, STATE_FILE, CONTEXT_FILE, CONFIG_FILE, LEADERBOARD_CSV)
    history, context = run.local / HISTORY_FILE, read_context(run)
    if not history.is_file() or context is None:  # a run from before trials.jsonl
        return run, rank(read_leaderboard(run.local), constraints or Constraints()), []
    read = read_history(history)
    if read.torn:
        lines = ", ".join(map(str, read.torn[:5]))
        print(f"note: {run.uri(HISTORY_FILE)}: {len(read.torn)} torn line(s) skipped "
              f"(line {lines}); the board shows every whole event", file=sys.stderr)
    records = trial_records(read.events, run.location)
    board = build_leaderboard(records, context, constraints,
                              running=driver_active(run.local))
    return run, board, records


def read_context(run: RunDir) -> SearchContext | None:
    """The run's shared context from `static.json` (None for a run from before it)."""
    path = run.local / CONTEXT_FILE
    return SearchContext.from_json(json.loads(path.read_text())) if path.is_file() else None


def read_combined(run: RunDir) -> Combination | None:
    """What `automl combine` last built for the run (None when it never ran)."""
    run.fetch(COMBINED_JSON)
    path = run.local / COMBINED_JSON
    return Combination.from_json(json.loads(path.read_text())) if path.is_file() else None


def write_report(run: RunDir, board: pd.DataFrame, records: list[TrialRecord],
                 constraints: Constraints | None, out: str | Path | None = None) -> str:
    """Write the run's HTML report to `out` (default `RUN/report.html`); returns where."""
    from automl.report import build_report

    config_file, state_file = run.local / CONFIG_FILE, run.local / STATE_FILE
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    state = json.loads(state_file.read_text()).get("state") if state_file.is_file() else "?"
    context = read_context(run)
    page = build_report(board, records, config, f"automl report — {run}", str(state),
                        constraints, objective_column(board),
                        context.data.duplicates if context is not None else None,
                        read_combined(run))
    if out is None:
        write_atomic(run.local / REPORT_FILE, page)
        if run.remote:
            storage.upload(run.local / REPORT_FILE, run.uri(REPORT_FILE))
        return run.uri(REPORT_FILE)
    target = paths.resolve(out, "--out")
    if paths.is_remote(target):
        storage.write_text(target, page)
    else:
        write_atomic(Path(target), page)
    return target


def export(run_dir: str | Path, out: str | Path | None = None, trial_id: str | None = None,
           constraints: Constraints | None = None, formats: Sequence[str] | str | None = None,
           refit: bool = False, address: str | None = None, log: Any = print,
           candidate: str | None = None) -> str:
    """Export the best eligible (or the named) trial of a search to `out` (a folder or
    storage URI; default `RUN/export`, `RUN/export-<trial>` or `RUN/export-refit`) in
    `formats` (default all: safetensors, torchscript, onnx, and hf for text), each checked
    against PyTorch on the run's validation examples. `refit`: first retrain the trial's
    configuration on train + validation for the epochs it needed (on Ray, `address`).
    `candidate`: a soup (or trial) of `automl combine`'s result by name (`"soup 0"`)."""
    from automl.export import ALL_FORMATS, parse_formats
    from automl.export.from_run import export_trial

    wanted = parse_formats(formats) if formats else ALL_FORMATS
    if candidate and (trial_id or refit):
        raise AutomlError("--candidate names what to export: drop --trial/--refit")
    label = candidate.replace(" ", "-") if candidate else trial_id
    name = "export-refit" if refit else f"export-{label}" if label else "export"
    # Before any work: never over a run dir or a user's files. A default target lies in the
    # run, checked once the run is known to be one (a wrong RUN path says so first).
    target = paths.resolve(out, "--out") if out else None
    if target:
        check_export_target(target)
    run, board, _ = load_run(run_dir, constraints)
    if target is None:
        target = run.uri(name)
        check_export_target(target)
    if candidate:
        from automl.combine.candidates import exported_candidate

        with exported_candidate(run, board, candidate) as row:
            return export_trial(run, row, board, read_context(run), target, wanted, log=log)
    row = best_trial(board, trial_id)
    # A refit has Ray up anyway: its export runs there too, off the driver.
    exported = export_trial(run, row, board, read_context(run), target, wanted, refit, address,
                            log, on_ray=refit)
    if refit:  # the board's `refit` column comes from the history the refit appended to
        write_leaderboard(load_run(run_dir, constraints)[1], run.local)
        for name in (LEADERBOARD_CSV, LEADERBOARD_PARQUET) if run.remote else ():
            storage.upload(run.local / name, run.uri(name))
    return exported
