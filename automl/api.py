"""Top-level Python API: the one place that wires config → data → search → leaderboard → export.

Heavy libraries (torch, Ray, Optuna) are imported inside the functions that need them, so
`automl leaderboard` and `automl validate` start without them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import paths, storage
from automl.backbones.registry import hub_reachable
from automl.combine.from_run import combine
from automl.config.durations import format_duration
from automl.config.schema import Config
from automl.data import prepare
from automl.data.catalog import TRAIN, balanced_weights, imbalance_note
from automl.data.shards import load_datasets
from automl.errors import AutomlError, SearchFailed, SearchInterrupted, root_cause
from automl.ownership import (
    check_new_run_dir,
    check_resumable,
    mark_run,
    unclaim_untouched,
    write_atomic,
)
from automl.runs.board_io import write_leaderboard
from automl.runs.history import write_state
from automl.runs.layout import (
    CONFIG_FILE,
    CONTEXT_FILE,
    EXPORT_DIR,
    HISTORY_FILE,
    LOG_DIR,
    RUN_MARKER,
    SPACE_FILE,
)
from automl.runs.leaderboard import build_leaderboard, failure_report, outcome
from automl.runs.location import RunDir
from automl.runs.lock import RunLock
from automl.runs.read import compare, export, leaderboard, report, write_report
from automl.runs.selection import best_trial, has_checkpoint
from automl.trial.context import DataFacts, SearchContext

if TYPE_CHECKING:
    import pandas as pd

    from automl.config.schema import Config
    from automl.data.catalog import Catalog
    from automl.runs.history import TrialRecord
    from automl.search.budget import TimeBudget


@dataclass(frozen=True)
class SearchResult:
    """What a finished search leaves behind."""

    run_dir: RunDir
    leaderboard: pd.DataFrame
    export_dir: str | None
    """Location of the exported best model (inside the run dir)."""
    wall_time_s: float
    outcome: str
    """One line: how many trials finished, stopped early and errored."""


def run_search(
    space: str | Path | Config | None = None,
    data: str | None = None,
    run_dir: str | Path | None = None,
    num_samples: int | None = None,
    address: str | None = None,
    epochs: int | None = None,
    storage_root: str | None = None,
    time_budget: str | float | None = None,
    preset: str | None = None,
    task: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    log: Any = print,
) -> SearchResult:
    """Search transfer configurations for `space` (a YAML path or Config) on local Ray or a
    cluster (`address`), write the leaderboard and export the best model into `run_dir`.

    `run_dir` is a local/NFS path or a storage URI (`s3://bucket/runs/x`); without it the run
    gets a timestamped folder under `storage_root` (default `runs/`). `time_budget` (`30m`,
    `1h30m`, seconds) stops the search when spent; trials then run until it is, unless
    `num_samples` caps them.

    Without `space` (zero-config), the task is detected from `data` (`task`, `text_column`,
    `label_column` override it) and a shipped preset space is used: `preset` (quick, medium,
    best) or the one that fits `time_budget`; it is fitted to the cluster's hardware and the
    data's size at the start. Every run writes its resolved space to `RUN/space.yaml`.

    Config, data and backbone problems raise before Ray starts; a search in which no trial
    produced a result raises `SearchFailed` (its `.result` holds the board and log paths).
    """
    from automl.config import parse as config_mod

    overrides = {"data.path": data, "search.num_samples": num_samples, "train.epochs": epochs,
                 "search.time_budget": time_budget, "data.text_column": text_column,
                 "data.label_column": label_column}
    if space is None:
        from automl.config.presets import zero_config

        if data is None:
            raise AutomlError("give a search space YAML, or --data PATH alone for a "
                              "zero-config search (task detected, preset space)")
        cfg, lines = zero_config(data, preset, time_budget, task, text_column, label_column,
                                 {"search.num_samples": num_samples, "train.epochs": epochs})
        for line in lines:
            log(line)
        out = RunDir.at(run_dir) if run_dir else _default_run_dir(cfg, storage_root)
        return _search(cfg, out, address, log, resume=False)
    if preset or task:
        raise AutomlError("--preset and --task choose a shipped space for a zero-config "
                          "search: drop them, or drop the search space YAML")
    if isinstance(space, Config):
        cfg = space
        if any(v is not None for v in overrides.values()):
            raise AutomlError("pass data/num_samples/epochs/time_budget/columns inside the "
                              "Config when giving one")
    else:
        cfg = config_mod.load(space, overrides)
    out = RunDir.at(run_dir) if run_dir else _default_run_dir(cfg, storage_root)
    return _search(cfg, out, address, log, resume=False)


def resume_search(run_dir: str | Path, address: str | None = None, log: Any = print
                  ) -> SearchResult:
    """Finish a search whose driver stopped (killed, Ctrl-C, lost head node): finished trials
    are kept, unfinished ones continue from their latest checkpoints, the TPE searcher keeps
    its history (Tune's experiment restore)."""
    from automl.config import parse as config_mod
    from automl.config.spaces import recipe_before

    out = RunDir.at(run_dir, "--resume")
    check_resumable(out.location)  # before anything of the run dir is read
    out.fetch(RUN_MARKER, SPACE_FILE, HISTORY_FILE, CONFIG_FILE)
    saved = out.local / SPACE_FILE
    if not saved.is_file():
        raise AutomlError(f"--resume {run_dir}: no {SPACE_FILE} there (the search stopped "
                          "before it started); start a new search with --run-dir NEW_DIR")
    cfg = config_mod.load(saved)  # the resolved space the search wrote: YAML, never a pickle
    if "lr_schedule:" not in saved.read_text(encoding="utf-8"):
        # Written before the recipe existed: its trials go on with the recipe they had.
        cfg = dataclasses.replace(cfg, space={**cfg.space,
                                              **recipe_before(cfg.task, cfg.train.hflip)})
    return _search(cfg, out, address, log, resume=True)


def _search(cfg: Config, out: RunDir, address: str | None, log: Any, resume: bool
            ) -> SearchResult:
    """Check the data and backbones, claim the run dir (new: missing or empty; resume:
    automl's, checked by the caller), and run the search holding the run dir's lock."""
    created = not out.local.exists()  # before the checks below, which may make it
    if not resume:
        check_new_run_dir(out.location)
    started = time.time()
    catalog = prepare.scan_data(cfg)
    if cfg.preset is not None:
        cfg = _fit_preset(cfg, catalog.count(TRAIN), address, log)
    preprocessing = prepare.preflight_backbones(cfg)
    storage.check_writable(out.location, "run dir")
    out.local.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(out.location):
            if not resume:
                mark_run(out.local, out.location)
            return _locked(cfg, out, address, log, resume, started, catalog, preprocessing)
    except AutomlError:
        if not resume:
            unclaim_untouched(out.local, out.location, created)
        raise


def _locked(cfg: Config, out: RunDir, address: str | None, log: Any, resume: bool,
            started: float, catalog: Catalog, preprocessing: dict[str, dict[str, Any]]
            ) -> SearchResult:
    """The search proper, while this process holds the run dir's lock."""
    from automl.config.space_file import describe, write_space
    from automl.search import final_seeds, ray_session
    from automl.search import tune as search
    from automl.search.budget import TimeBudget
    from automl.search.ranking import prune, rank_backbones, seed_points

    cluster = ray_session.init_ray(address)
    can_grow = not ray_session.is_embedded(address)
    concurrency = search.plan_concurrency(cfg.resources, cluster, can_grow)
    if search.trials_that_fit(cfg.resources, cluster) == 0:
        res = cfg.resources
        log(f"note: no node fits a trial yet ({res.workers_per_trial} worker(s) × "
            f"{res.cpus_per_worker:g} CPU{' + 1 GPU' if res.use_gpu else ''}); the first "
            "trial waits for the autoscaler to add one (Ctrl-C to stop)")
    ray_session.warn_if_not_shared(out.location, address, log)
    if not resume:
        write_space(cfg, out.local / SPACE_FILE, f"The search space of run {out}, resolved "
                    f"({time.strftime('%Y-%m-%d %H:%M')}).\nRe-run it with: automl search "
                    f"{out.uri(SPACE_FILE)}")
    log(f"space (re-run: automl search {out.uri(SPACE_FILE)}):\n  "
        + "\n  ".join(describe(cfg)))
    if not resume:  # the first run's config.json stays what the report shows
        write_atomic(out.local / CONFIG_FILE,
                     json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    out.sync()  # the space first: a search whose driver dies can be resumed from anywhere
    with ray_session.ray_logs_to(out.local / LOG_DIR / "ray.log"):
        prepared = prepare.prepare_data(cfg, catalog, preprocessing, out.location)
        datasets = load_datasets(prepared)
    log(prepared.summary(catalog.source, catalog.dropped))
    counts = catalog.class_counts(TRAIN)
    imbalance = imbalance_note(counts, catalog.classes, cfg.search.metric_name,
                               cfg.train.class_weights)
    repeated = catalog.duplicates.describe() if catalog.duplicates else None
    for note in (*catalog.notes, *(n for n in (imbalance, repeated) if n)):
        log(f"note: {note}")
    # A restored Tune experiment keeps the budget it started with; a search resumed before
    # Tune started (killed while preparing or ranking) starts its budget now.
    restoring = resume and search.can_restore(out)
    # search.final_seeds keeps its share of the budget for the end (`final_seeds`).
    budget = None if restoring or cfg.search.budget_s is None else TimeBudget(
        cfg.search.budget_s * (1 - final_seeds.reserved_fraction(cfg.search)),
        spent=time.time() - started)
    log(f"Ray: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs → "
        f"{concurrency} trial(s) at a time{' (more as nodes join)' if can_grow else ''}; "
        f"{_trials_line(cfg, budget)}, {cfg.train.epochs} epoch(s) max each; run dir {out}"
        + (" (resumed)" if resume else ""))
    first = next(iter(prepared.variants.values()))
    context = SearchContext.from_config(
        cfg, list(prepared.classes), preprocessing, prepared.variant_of,
    ).replace(
        data_root=storage.join(prepare.cache_root(cfg, out.location), catalog.fingerprint),
        data=DataFacts(catalog.source, first.train_rows, first.val_rows, cfg.data.text_column,
                       dataclasses.asdict(catalog.duplicates) if catalog.duplicates else None),
        class_weights=(balanced_weights(counts) if cfg.train.class_weights == "balanced"
                       else None),
    )
    ranked = rank_backbones(cfg, context, datasets, log)
    context = context.replace(transferability=ranked)
    cfg = prune(cfg, ranked, log)
    write_atomic(out.local / CONTEXT_FILE, json.dumps(context.to_json(), indent=2))
    try:
        records = search.run_trials(cfg, context, datasets, out, concurrency, resume, budget,
                                    [*cfg.first_trials, *seed_points(ranked, cfg, concurrency)])
        if final_seeds.enabled(cfg.search) and records and all(r.ended for r in records):
            left = None if cfg.search.budget_s is None or restoring else TimeBudget(
                cfg.search.budget_s, spent=time.time() - started)
            records = final_seeds.run_final_seeds(cfg, context, datasets, out, concurrency,
                                                  records, resume, left, log)
    except BaseException:
        write_state(out.local, "interrupted")
        raise
    finally:
        out.sync()  # logs and history, also when interrupted
    board = build_leaderboard(records, context)
    write_leaderboard(board, out.local)
    # The search's stopping rule was met when every trial it sampled ended and it sampled
    # them all, or its time budget ended it (spent, or too little left for another trial).
    wanted = cfg.search.max_trials
    budget_ended = (budget is not None and budget.ended_search()) or any(
        r.cut == "time_budget" for r in records)
    complete = all(r.ended for r in records) and (
        wanted is None or len(records) >= wanted or budget_ended)
    write_state(out.local, "finished" if complete else "interrupted")
    if complete and wanted is not None and len(records) < wanted:
        log(f"the time budget ended the search after {len(records)} of {wanted} trials")
    assessed: dict[str, Any] = {"test": None, "calibration": None}
    if complete and has_checkpoint(board).any():
        records, assessed = _assess_selected(out, board, records, cfg, context, log)
        board = build_leaderboard(records, context)
        write_leaderboard(board, out.local)
    if complete and cfg.search.combine and has_checkpoint(board).any():
        _combine(out, board, cfg, context, log)
    try:
        write_report(out, board, records, None)
    except Exception as exc:  # the report must never cost the search its results
        log(f"warning: the HTML report could not be built ({exc}); the board is saved, "
            f"retry with: automl report {out}")
    if not complete:
        out.sync()
        done = sum(r.ended for r in records)
        raise SearchInterrupted(
            f"search interrupted: {done} of {wanted or len(records)} trials done (kept, board "
            f"so far: {out.uri('leaderboard.csv')}); unfinished trials continue from their "
            f"latest checkpoints with:\n  automl search --resume {out}")
    export_dir = None
    if has_checkpoint(board).any():
        export_dir = _export_best(out, board, context, log)
    wall = time.time() - started
    out.sync()
    write_atomic(out.local / "summary.json", json.dumps({
        "wall_time_s": wall, "concurrency": concurrency, "trials": len(board),
        "status_counts": board["status"].value_counts().to_dict(),
        "best_val_accuracy": _float(board["val_accuracy"].max()),
        "metric": context.metric, "best_val": _float(board[context.objective].max()),
        **assessed,
        "export_dir": export_dir,
        "disk_bytes": out.disk_usage(),
    }, indent=2))
    out.sync()
    result = SearchResult(out, board, export_dir, wall, outcome(board))
    if export_dir is None:
        raise SearchFailed(failure_report(board, out.local / LOG_DIR), result)
    return result


def _fit_preset(cfg: Config, train_rows: int, address: str | None, log: Any) -> Config:
    """A preset's space fitted to the cluster's GPUs (an embedded Ray gets this machine's)
    and the training split's size."""
    from automl.config.presets import fit_preset
    from automl.search import ray_session

    if address is None:
        import torch

        gpus = float(torch.cuda.device_count())
    else:
        gpus = ray_session.init_ray(address).get("GPU", 0.0)
    cfg, notes = fit_preset(cfg, gpus, train_rows, hub_reachable)
    for note in notes:
        log(note)
    return cfg


def _trials_line(cfg: Config, budget: TimeBudget | None) -> str:

    trials = cfg.search.max_trials
    if budget is None:
        return f"{trials} trials" if trials else "trials until the time budget is spent"
    cap = f"at most {trials} trials" if trials else "as many trials as fit"
    return (f"{cap} in a time budget of {format_duration(budget.seconds)} "
            f"({format_duration(budget.left())} left after preparing the data)")


def _float(value: Any) -> float | None:
    import pandas as pd

    return None if pd.isna(value) else float(value)


def _default_run_dir(cfg: Config, root: str | None) -> RunDir:
    name = Path(cfg.source).stem if cfg.source.endswith((".yaml", ".yml")) else "search"
    base = paths.resolve(root or "runs", "--storage")
    # Seconds alone collide (two zero-config searches started together): add a random tag.
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return RunDir.at(storage.join(base, f"{name}-{stamp}"))


def _assess_selected(run: RunDir, board: pd.DataFrame, records: list[TrialRecord],
                     cfg: Config, context: SearchContext, log: Any
                     ) -> tuple[list[TrialRecord], dict[str, Any]]:
    """Once selection is over, score the selected trial on the test split and fit its
    temperature on validation (one Ray task), and record both in the run's history: the
    board's test and calibration columns come from there. Returns the new records and the
    summary's `test` and `calibration` entries."""
    from automl.export.score import assess_selected, describe
    from automl.runs.history import append_event, event, load_records

    row = best_trial(board)
    trial_id = str(row["trial_id"])
    try:
        found = assess_selected(row, context.data_root, cfg.resources.use_gpu, context.metric,
                                cfg.search.calibrate)
    except Exception as exc:  # report-only numbers: they must not cost the search its export
        log(f"warning: the selected trial could not be scored or calibrated "
            f"({root_cause(exc)})")
        return records, {"test": None, "calibration": None}
    summary: dict[str, Any] = {"test": None, "calibration": None}
    if found is None:
        return records, summary
    if (score := found.test) is not None:
        val = float(row[context.objective])
        log(f"Selected trial {trial_id}: " + describe(score, val, float(row["val_se"])))
        append_event(run.local / HISTORY_FILE, event("test", trial_id, **score.to_json()))
        summary["test"] = {"trial_id": trial_id, **score.to_json(), "val": val,
                           "val_se": float(row["val_se"]), "selection_optimism": val - score.value}
    if (calibration := found.calibration) is not None:
        log(f"Selected trial {trial_id}: {calibration.describe()}")
        append_event(run.local / HISTORY_FILE,
                     event("calibration", trial_id, **calibration.to_json()))
        summary["calibration"] = {"trial_id": trial_id, **calibration.to_json()}
    return load_records(run.local, run.location), summary


def _combine(run: RunDir, board: pd.DataFrame, cfg: Config, context: SearchContext, log: Any
             ) -> None:
    """`search.combine`: soups and the ensemble beside the selected trial (`automl combine`),
    as Ray tasks; a failure costs the search nothing but this one line."""
    from automl.combine.build import combine_rows
    from automl.combine.from_run import save_combined

    log("Combining trials: greedy soups and ensemble selection (search.combine)")
    try:
        found = combine_rows(board, str(best_trial(board)["trial_id"]), str(context.data_root),
                             run.location, context.metric, use_gpu=cfg.resources.use_gpu,
                             log=lambda line: log(f"  {line}"))
    except Exception as exc:  # report-only figures: the search's results come first
        log(f"warning: soups and the ensemble could not be built ({root_cause(exc)}); "
            f"retry with: automl combine {run}")
        return
    log(found.table())
    save_combined(run, found, log)


def _export_best(run: RunDir, board: pd.DataFrame, context: SearchContext, log: Any) -> str:
    """Export the selected trial into `RUN/export` in every format, in a Ray task (the
    driver's memory stays flat); a format that fails its check costs the search nothing: the
    safetensors export (light: no conversion) is made here and the cause printed."""
    from automl.export import ALL_FORMATS
    from automl.export.from_run import export_trial

    row, target = best_trial(board), str(run.local / EXPORT_DIR)
    log(f"Exporting trial {row['trial_id']}; each format is checked against PyTorch on "
        "validation examples")
    try:
        export_trial(run, row, board, context, target, ALL_FORMATS, log=log, on_ray=True)
    except Exception as exc:  # exporters raise anything; the search's results come first
        log(f"warning: {exc}; kept safetensors + config only (retry: automl export {run} "
            "--format ...)")
        export_trial(run, row, board, context, target, ("safetensors",), log=log)
    return run.uri(EXPORT_DIR)


def validate(space: str | Path) -> Config:
    """Validate a search space without building anything; raises ConfigError with every problem."""
    from automl.config import parse as config_mod

    return config_mod.load(space)


__all__ = ["SearchResult", "combine", "compare", "export", "leaderboard", "report", "resume_search",
           "run_search", "validate"]
