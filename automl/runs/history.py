"""Every trial's per-epoch history, persisted while the search runs (`RUN/trials.jsonl`).

The driver appends one JSON line per event: a trial started (with its sampled
hyperparameters), reported an epoch, or ended (completed, or errored with the cause). The
board and the report are built from this file alone, so they work on a finished, interrupted,
still-running or remote run, and a resumed search appends to the same file. `state.json`
says whether a driver is still working on the run (a heartbeat every few seconds).

No Ray import here: reading a run needs only pandas.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl import storage
from automl.errors import AutomlError
from automl.ownership import write_atomic
from automl.runs.layout import HISTORY_FILE, STATE_FILE

LOGGED_AT = "logged_at"
"""History entries: when the driver received the epoch (Unix time), for best-so-far curves."""
CHECKPOINT_PATH = "checkpoint_path"
"""The result key holding a reported checkpoint's location (Ray's TuneReportCallback)."""
OUT_OF_TIME = "out_of_time"
"""Result key a trial sets on the last epoch it ran because another would pass the search's
time budget (`automl.search.budget`)."""
DRIVER_LOST = "driver_lost"
"""End-event `cut` of a trial whose driver died before Tune's experiment snapshot included
it: a resumed search cannot continue it (it shows as `interrupted`, its epochs kept)."""
HEARTBEAT_S = 10.0
"""How often a running driver refreshes `state.json`."""
STALE_S = 6 * HEARTBEAT_S
"""A `running` state older than this is a driver that died (killed, lost head node)."""


def event(kind: str, trial_id: str, **fields: Any) -> str:
    """One history line (JSON, NaN/inf as null: strict JSON readers reject them)."""
    return json.dumps({"event": kind, "trial_id": trial_id, "time": time.time(),
                       **{k: _plain(v) for k, v in fields.items()}}, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # NumPy scalars
        return _plain(value.item())
    return str(value)


@dataclass(frozen=True)
class HistoryFile:
    """The readable events of a history file, and the lines that were not."""

    events: list[dict[str, Any]]
    torn: tuple[int, ...]
    """Line numbers that are not a whole event (a write cut off by a kill or a full disk):
    skipped, so one bad line never costs the run its board."""


def read_history(path: Path) -> HistoryFile:
    """The events of a history file; every unreadable line (anywhere) is skipped and
    counted."""
    if not path.is_file():
        raise AutomlError(f"no {HISTORY_FILE} in {str(path.parent)!r}; pass the run dir of a "
                          "search (automl search --run-dir RUN)")
    events, torn = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            torn.append(number)
            continue
        if isinstance(item, dict) and "event" in item and "trial_id" in item:
            events.append(item)
        else:
            torn.append(number)
    return HistoryFile(events, tuple(torn))


def read_events(path: Path) -> list[dict[str, Any]]:
    """The readable events of a history file (see `read_history`)."""
    return read_history(path).events


def append_event(path: Path, line: str) -> None:
    """Append one event line. A line cut off earlier (no newline at the end of the file) is
    closed first, so the new event never lands on a torn line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab+") as f:
        f.seek(0, 2)
        if f.tell():
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(line.encode("utf-8") + b"\n")


def write_state(run_local: Path, state: str) -> None:
    """Record the driver's state of the run: `running` (heartbeat), `finished`, `interrupted`."""
    write_atomic(run_local / STATE_FILE, json.dumps({"state": state, "heartbeat": time.time()}))


def driver_active(run_local: Path) -> bool:
    """True when a driver is working on this run now (fresh `running` heartbeat)."""
    try:
        saved = json.loads((run_local / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return saved.get("state") == "running" and time.time() - saved["heartbeat"] < STALE_S


@dataclass(frozen=True)
class TrialRecord:
    """One trial's outcome as plain values: what the leaderboard is built from."""

    trial_id: str
    params: dict[str, Any]
    history: list[dict[str, Any]]
    """One entry per epoch reported (a resumed trial's repeated epochs: the latest wins)."""
    error: str | None
    trial_time_s: float
    ended: bool = True
    """False: no end event, so still running, or interrupted if no driver works on the run."""
    started_at: float | None = None
    """Unix time of the trial's first start event."""
    refit: dict[str, Any] | None = None
    """The latest refit of the trial's configuration on train + validation (`automl export
    --refit`): epochs, examples, seconds, export location."""
    cut: str | None = None
    """Why a trial that ended had to stop before its last epoch, other than the scheduler
    (`time_budget`: the search's time budget was spent; `driver_lost`, see DRIVER_LOST)."""
    test: dict[str, Any] | None = None
    """The latest score of the trial's selected checkpoint on the test split (after the
    search; `automl.export.score`): accuracy, loss, examples, se."""
    calibration: dict[str, Any] | None = None
    """Its temperature fitted on validation after selection, with ECE before/after
    (`automl.export.calibrate.Calibration`)."""


def trial_records(events: list[dict[str, Any]], location: str) -> list[TrialRecord]:
    """The trials of a history, in the order they started. Checkpoint paths become
    locations of the run (`location`: its path or URI)."""
    trials: dict[str, dict[str, Any]] = {}
    for item in events:
        trial = trials.setdefault(str(item["trial_id"]), {
            "params": {}, "epochs": {}, "error": None, "ended": False,
            "start": item.get("time"), "last": item.get("time"), "refit": None, "cut": None,
            "test": None, "calibration": None})
        kind = item["event"]
        if kind in ("refit", "test", "calibration"):  # after the search: not its time
            trial[kind] = {k: v for k, v in item.items() if k not in ("event", "trial_id")}
            continue
        trial["last"] = item.get("time", trial["last"])
        if kind == "start":
            trial["params"] = item.get("params") or trial["params"]
            trial["ended"], trial["error"], trial["cut"] = False, None, None  # runs again
        elif kind == "result":
            metrics = {**(item.get("metrics") or {}), LOGGED_AT: item.get("time")}
            if isinstance(path := metrics.get(CHECKPOINT_PATH), str):
                metrics[CHECKPOINT_PATH] = checkpoint_location(path, location,
                                                               str(item["trial_id"]))
            trial["epochs"][metrics.get("epoch", len(trial["epochs"]) + 1)] = metrics
        elif kind == "end":
            trial["ended"], trial["error"], trial["cut"] = True, item.get("error"), item.get("cut")
    records = []
    for trial_id, trial in trials.items():
        history = [trial["epochs"][e] for e in sorted(trial["epochs"], key=_epoch_key)]
        spent = (history[-1].get("time_total_s") if history else None)
        if not isinstance(spent, (int, float)):
            spent = (trial["last"] or 0.0) - (trial["start"] or 0.0)
        records.append(TrialRecord(trial_id, trial["params"], history, trial["error"],
                                   float(spent), trial["ended"], trial["start"],
                                   trial["refit"], trial["cut"], trial["test"],
                                   trial["calibration"]))
    return records


def checkpoint_location(path: str, location: str, trial_id: str) -> str:
    """Where a reported checkpoint is now: Ray reports absolute paths, but a run dir may
    have been moved or copied since, so a path under `trials/<trial>/` is taken relative
    to the run's current `location`."""
    marker = f"trials/{trial_id}/"
    at = path.find("/" + marker)
    if path.startswith(marker) or at >= 0:
        return storage.join(location, path[at + 1:] if at >= 0 else path)
    return storage.to_location(path, location)


def _epoch_key(epoch: Any) -> float:
    return float(epoch) if isinstance(epoch, (int, float)) else math.inf


def load_records(run_local: Path, location: str) -> list[TrialRecord]:
    """The trial records of a run whose files are in `run_local`."""
    return trial_records(read_events(run_local / HISTORY_FILE), location)
