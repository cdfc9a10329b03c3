"""Export a trial of a search: the run supplies the validation inputs the formats are checked
on and the card's provenance; `refit` first retrains the trial's configuration on train +
validation (Ray Train, like the search's trials) for the epochs it needed."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from automl import paths, storage
from automl.data.shards import dataset_of, first_rows, split_dir
from automl.errors import AutomlError, TrialFailed
from automl.export.context import ExportContext
from automl.export.remote import export_on_ray, write_export
from automl.export.writer import CHECK_ROWS
from automl.runs.history import append_event, event
from automl.runs.layout import CONFIG_FILE as RUN_CONFIG_FILE
from automl.runs.layout import HISTORY_FILE, REFIT_DIR
from automl.runs.leaderboard import CALIBRATION, outcome
from automl.runs.selection import objective_column
from automl.search import ray_session
from automl.tasks import get_task
from automl.trial.executors import fit_plan
from automl.trial.plan import TrialPlan

if TYPE_CHECKING:
    import pandas as pd

    from automl.runs.location import RunDir
    from automl.trial.context import SearchContext



def export_trial(run: RunDir, row: pd.Series, board: pd.DataFrame,
                 search: SearchContext | None,
                 out: str, formats: Sequence[str], refit: bool = False,
                 address: str | None = None, log: Callable[[str], Any] = print,
                 on_ray: bool = False) -> str:
    """Export the board's `row` to `out` (a folder or storage URI); returns where it went.
    `search`: the run's shared context (None for a run too old to have `static.json`).
    `on_ray`: build and check the formats in a Ray task (Ray must be initialized), so the
    driver's memory stays flat when a large model converts (`export_on_ray`)."""
    location = str(row["checkpoint"])
    plan = TrialPlan.read(location)
    context = _context(run, row, board, search, plan)
    if refit:
        epochs = int(row["best_epoch"])
        log(f"refit: trial {row['trial_id']}'s configuration on train + validation for "
            f"{epochs} epoch(s) (Ray Train)")
        location, info = _refit(run, row, search, plan, epochs, address)
        info["export"] = paths.resolve(out, "--out")
        log(f"refit: {info['examples']} examples, {epochs} epoch(s) in {info['seconds']:.0f} s")
        # The trial's temperature was fitted to the trial's weights; the refit has no
        # held-out data to fit its own: it ships uncalibrated (the card says so).
        context = dataclasses.replace(context, refit=info, calibration=None)
    if on_ray:
        target = export_on_ray(location, out, formats, context, log)
    else:
        target = write_export(location, out, formats, context, log)
    if refit:
        _record_refit(run, str(row["trial_id"]), context.refit or {})
    return target


def _context(run: RunDir, row: pd.Series, board: pd.DataFrame, search: SearchContext | None,
             plan: TrialPlan) -> ExportContext:
    """The trial's board row, data summary, search summary and real validation rows."""
    examples = None
    if search is not None and search.data_root:
        task = get_task(plan.task)
        examples = first_rows(split_dir(search.data_root, task, plan.preprocessing, "val"),
                              CHECK_ROWS)
    config_file = run.local / RUN_CONFIG_FILE
    space = json.loads(config_file.read_text()).get("source") if config_file.is_file() else None
    summary = {"space": space, "run_dir": run.location, "outcome": outcome(board),
               "selection": f"best {objective_column(board)}; ties → fewer device-hours, "
                            "then fewer trainable parameters"}
    trial = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.to_dict().items()}
    data = dataclasses.asdict(search.data) if search is not None else {}
    calibration = None
    if isinstance(t := trial.get("temperature"), (int, float)) and t == t:
        calibration = {k: trial.get(k) for k in CALIBRATION}
    return ExportContext(examples, trial, data, summary, calibration=calibration)


def _refit(run: RunDir, row: pd.Series, search: SearchContext | None, plan: TrialPlan,
           epochs: int, address: str | None) -> tuple[str, dict[str, Any]]:
    """Train `plan` for `epochs` on the union of the run's prepared train and validation
    shards; the latest checkpoint's location and what the refit did."""
    if search is None or not search.data_root:
        raise AutomlError(f"--refit: {run} does not record where its prepared data is (a run "
                          "from an older automl); export without --refit")
    task = get_task(plan.task)
    folders = {s: split_dir(search.data_root, task, plan.preprocessing, s)
               for s in ("train", "val")}
    missing = [f for f in folders.values() if not storage.exists(f)]
    if missing:
        raise AutomlError(f"--refit: the run's prepared data is gone ({missing[0]}); run the "
                          "search again (it re-prepares the data) or export without --refit")
    started = time.time()
    ray_session.init_ray(address)
    train, val = (dataset_of(folders[s], None) for s in ("train", "val"))
    rows = int(train.count() + val.count())
    # The schedule is laid out over the refit's own epochs of train + validation.
    search = search.replace(data=dataclasses.replace(search.data, train_rows=rows))
    # The trial's schedule, stopped at its best epoch (not squeezed into fewer epochs).
    refit_plan = dataclasses.replace(plan, epochs=epochs, schedule_epochs=plan.planned_epochs)
    name = f"{row['trial_id']}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = fit_plan(refit_plan, {"train": train.union(val), "val": val}, search, name,
                          storage_path=run.uri(REFIT_DIR), keep="epoch", started=started)
    except TrialFailed as exc:
        raise AutomlError(f"--refit failed: {str(exc).splitlines()[0]}") from None
    if result.checkpoint is None:
        raise AutomlError("--refit produced no checkpoint")
    info = {"epochs": epochs, "examples": rows,
            "seconds": time.time() - started, "checkpoint": str(result.checkpoint.path),
            "train_accuracy_after": (result.metrics or {}).get("train_accuracy")}
    return storage.to_location(result.checkpoint.path, run.location), info


def _record_refit(run: RunDir, trial_id: str, info: dict[str, Any]) -> None:
    """Append a `refit` event to the run's history: the board shows it on the trial's row."""
    run.fetch(HISTORY_FILE)
    append_event(run.local / HISTORY_FILE, event("refit", trial_id, **info))
    if run.remote:
        storage.upload(run.local / HISTORY_FILE, run.uri(HISTORY_FILE))
