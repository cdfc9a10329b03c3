"""Top-level Python API: the one place that wires config → data → search → leaderboard → export.

Heavy libraries (torch, Ray, Optuna) are imported inside the functions that need them, so
`automl leaderboard` and `automl validate` start without them.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import paths, storage
from automl.errors import AutomlError, SearchFailed, SearchInterrupted
from automl.run_dir import CONFIG_FILE, RunDir

if TYPE_CHECKING:
    import pandas as pd

    from automl.config import Config


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
    space: str | Path | Config,
    data: str | None = None,
    run_dir: str | Path | None = None,
    num_samples: int | None = None,
    address: str | None = None,
    epochs: int | None = None,
    storage_root: str | None = None,
    log: Any = print,
) -> SearchResult:
    """Search transfer configurations for `space` (a YAML path or Config) on local Ray or a
    cluster (`address`), write the leaderboard and export the best model into `run_dir`.

    `run_dir` is a local/NFS path or a storage URI (`s3://bucket/runs/x`); without it the run
    gets a timestamped folder under `storage_root` (default `runs/`).

    Config, data and backbone problems raise before Ray starts; a search in which no trial
    produced a result raises `SearchFailed` (its `.result` holds the board and log paths).
    """
    from automl import config as config_mod
    from automl.config import Config

    overrides = {"data.path": data, "search.num_samples": num_samples, "train.epochs": epochs}
    if isinstance(space, Config):
        cfg = space
        if data or num_samples or epochs:
            raise AutomlError("pass data/num_samples/epochs inside the Config when giving one")
    else:
        cfg = config_mod.load(space, overrides)
    out = RunDir.at(run_dir) if run_dir else _default_run_dir(cfg, storage_root)
    return _search(cfg, out, address, log, resume=False)


def resume_search(run_dir: str | Path, address: str | None = None, log: Any = print
                  ) -> SearchResult:
    """Finish a search whose driver stopped (killed, Ctrl-C, lost head node): finished trials
    are kept, unfinished ones continue from their latest checkpoints, the TPE searcher keeps
    its history (Tune's experiment restore)."""
    out = RunDir.at(run_dir, "--resume")
    out.fetch(CONFIG_FILE)
    saved = out.local / CONFIG_FILE
    if not saved.is_file():
        raise AutomlError(f"--resume {run_dir}: no {CONFIG_FILE} there; pass the run dir of "
                          "a search started by this version of automl")
    with saved.open("rb") as f:
        cfg = pickle.load(f)  # written by _search below: the run dir is the user's own
    return _search(cfg, out, address, log, resume=True)


def _search(cfg: Config, out: RunDir, address: str | None, log: Any, resume: bool
            ) -> SearchResult:
    from automl import ray_session, search
    from automl.leaderboard import (
        LOG_DIR,
        best_trial,
        build_leaderboard,
        failure_report,
        has_result,
        outcome,
        write_leaderboard,
    )
    from automl.plan import static_block
    from automl.prepare import preflight_backbones, prepare_data, scan_data
    from automl.prepared import load_datasets

    started = time.time()
    catalog = scan_data(cfg)
    preprocessing = preflight_backbones(cfg)
    storage.check_writable(out.location, "run dir")
    cluster = ray_session.init_ray(address)
    can_grow = not ray_session.is_embedded(address)
    concurrency = search.plan_concurrency(cfg.resources, cluster, can_grow)
    if search.trials_that_fit(cfg.resources, cluster) == 0:
        res = cfg.resources
        log(f"note: no node fits a trial yet ({res.workers_per_trial} worker(s) × "
            f"{res.cpus_per_worker:g} CPU{' + 1 GPU' if res.use_gpu else ''}); the first "
            "trial waits for the autoscaler to add one (Ctrl-C to stop)")
    ray_session.warn_if_not_shared(out.location, address, log)
    out.local.mkdir(parents=True, exist_ok=True)
    with (out.local / CONFIG_FILE).open("wb") as f:
        pickle.dump(cfg, f)
    out.sync()  # the config first: a search whose driver dies can be resumed from anywhere
    with ray_session.ray_logs_to(out.local / LOG_DIR / "ray.log"):
        prepared = prepare_data(cfg, catalog, preprocessing, out.location)
        datasets = load_datasets(prepared)
    log(prepared.summary(catalog.source, catalog.dropped))
    log(f"Ray: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs → "
        f"{concurrency} trial(s) at a time{' (more as nodes join)' if can_grow else ''}; "
        f"{cfg.search.num_samples} trials, "
        f"{cfg.train.epochs} epoch(s) max each; run dir {out}"
        + (" (resumed)" if resume else ""))
    static = static_block(cfg, list(prepared.classes), preprocessing, prepared.variant_of)
    (out.local / "static.json").write_text(json.dumps(static, indent=2))
    try:
        records = search.run_trials(cfg, static, datasets, out, concurrency, resume=resume)
    finally:
        out.sync()  # logs, also when interrupted
    board = build_leaderboard(records, static)
    write_leaderboard(board, out.local)
    if len(records) < cfg.search.num_samples or any(r.interrupted for r in records):
        out.sync()
        done = sum(not r.interrupted for r in records)
        raise SearchInterrupted(
            f"search interrupted: {done} of {cfg.search.num_samples} trials done (kept, board "
            f"so far: {out.uri('leaderboard.csv')}); unfinished trials continue from their "
            f"latest checkpoints with:\n  automl search --resume {out}")
    export_dir = None
    if has_result(board):
        _export(best_trial(board)["checkpoint"], out.local / "export")
        export_dir = out.uri("export")
    wall = time.time() - started
    out.sync()
    (out.local / "summary.json").write_text(json.dumps({
        "wall_time_s": wall, "concurrency": concurrency, "trials": len(board),
        "status_counts": board["status"].value_counts().to_dict(),
        "best_val_accuracy": _float(board["val_accuracy"].max()),
        "export_dir": export_dir,
        "disk_bytes": out.disk_usage(),
    }, indent=2))
    out.sync()
    result = SearchResult(out, board, export_dir, wall, outcome(board))
    if export_dir is None:
        raise SearchFailed(failure_report(board, out.local / LOG_DIR), result)
    return result


def _float(value: Any) -> float | None:
    import pandas as pd

    return None if pd.isna(value) else float(value)


def _default_run_dir(cfg: Config, root: str | None) -> RunDir:
    name = Path(cfg.source).stem if cfg.source.endswith((".yaml", ".yml")) else "search"
    base = paths.resolve(root or "runs", "--storage")
    return RunDir.at(storage.join(base, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"))


def _export(checkpoint: str, out: str | Path) -> str:
    """Export a checkpoint (local or on storage) to a local folder or a storage location."""
    from automl.export import export_checkpoint

    target = paths.resolve(out, "--out")
    with storage.local_copy(checkpoint) as src:
        if not paths.is_remote(target):
            return str(export_checkpoint(src, target))
        with tempfile.TemporaryDirectory(prefix="automl-export-") as tmp:
            export_checkpoint(src, Path(tmp))
            storage.upload(Path(tmp), target)
    return target


def validate(space: str | Path) -> Config:
    """Validate a search space without building anything; raises ConfigError with every problem."""
    from automl import config as config_mod

    return config_mod.load(space)


def leaderboard(run_dir: str | Path) -> pd.DataFrame:
    """The ranked leaderboard of a finished search (local path or storage URI)."""
    from automl.leaderboard import LEADERBOARD_CSV, read_leaderboard

    run = RunDir.at(run_dir, "run dir")
    run.fetch(LEADERBOARD_CSV)
    return read_leaderboard(run.local)


def export(run_dir: str | Path, out: str | Path, trial_id: str | None = None) -> str:
    """Export the best (or the named) trial of a search to `out` (a folder or storage URI)."""
    from automl.leaderboard import best_trial

    row = best_trial(leaderboard(run_dir), trial_id)
    return _export(row["checkpoint"], out)


__all__ = ["SearchResult", "export", "leaderboard", "resume_search", "run_search", "validate"]
