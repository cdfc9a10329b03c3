"""Top-level Python API: the one place that wires config → data → search → leaderboard → export.

Heavy libraries (torch, Ray, Optuna) are imported inside the functions that need them, so
`automl leaderboard` and `automl validate` start without them.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import paths
from automl.errors import AutomlError, SearchFailed

if TYPE_CHECKING:
    import pandas as pd

    from automl.config import Config

CONFIG_FILE = "config.pkl"
"""The validated config of a search, for `--resume`."""


@dataclass(frozen=True)
class SearchResult:
    """What a finished search leaves behind."""

    run_dir: Path
    leaderboard: pd.DataFrame
    export_dir: Path | None
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
    log: Any = print,
) -> SearchResult:
    """Search transfer configurations for `space` (a YAML path or Config) on local Ray or a
    cluster (`address`), write the leaderboard and export the best model into `run_dir`.

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
    out = paths.local_path(run_dir, "--run-dir") if run_dir else _default_run_dir(cfg)
    return _search(cfg, out, address, log, resume=False)


def resume_search(run_dir: str | Path, address: str | None = None, log: Any = print
                  ) -> SearchResult:
    """Finish a search whose driver stopped (killed, Ctrl-C, lost head node): finished trials
    are kept, unfinished ones continue from their latest checkpoints, the TPE searcher keeps
    its history (Tune's experiment restore)."""
    out = paths.local_path(run_dir, "--resume")
    saved = out / CONFIG_FILE
    if not saved.is_file():
        raise AutomlError(f"--resume {run_dir}: no {CONFIG_FILE} there; pass the run dir of "
                          "a search started by this version of automl")
    with saved.open("rb") as f:
        cfg = pickle.load(f)  # written by _search below: the run dir is the user's own
    return _search(cfg, out, address, log, resume=True)


def _search(cfg: Config, out: Path, address: str | None, log: Any, resume: bool
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
    cluster = ray_session.init_ray(address)
    concurrency = search.plan_concurrency(cfg.resources, cluster)
    out.mkdir(parents=True, exist_ok=True)
    with (out / CONFIG_FILE).open("wb") as f:
        pickle.dump(cfg, f)
    with ray_session.ray_logs_to(out / LOG_DIR / "ray.log"):
        prepared = prepare_data(cfg, catalog, preprocessing, out)
        datasets = load_datasets(prepared)
    log(prepared.summary(catalog.source, catalog.dropped))
    log(f"Ray: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs → "
        f"{concurrency} trial(s) at a time; {cfg.search.num_samples} trials, "
        f"{cfg.train.epochs} epoch(s) max each; run dir {out}"
        + (" (resumed)" if resume else ""))
    static = static_block(cfg, list(prepared.classes), preprocessing, prepared.variant_of)
    (out / "static.json").write_text(json.dumps(static, indent=2))
    records = search.run_trials(cfg, static, datasets, out, concurrency, resume=resume)
    board = build_leaderboard(records, static)
    write_leaderboard(board, out)
    export_dir = None
    if has_result(board):
        from automl.export import export_checkpoint

        export_dir = export_checkpoint(best_trial(board)["checkpoint"], out / "export")
    wall = time.time() - started
    (out / "summary.json").write_text(json.dumps({
        "wall_time_s": wall, "concurrency": concurrency, "trials": len(board),
        "status_counts": board["status"].value_counts().to_dict(),
        "best_val_accuracy": _float(board["val_accuracy"].max()),
        "export_dir": str(export_dir) if export_dir else None,
        "disk_bytes": paths.disk_usage(out),
    }, indent=2))
    result = SearchResult(out, board, export_dir, wall, outcome(board))
    if export_dir is None:
        raise SearchFailed(failure_report(board, out / LOG_DIR), result)
    return result


def _float(value: Any) -> float | None:
    import pandas as pd

    return None if pd.isna(value) else float(value)


def _default_run_dir(cfg: Config) -> Path:
    name = Path(cfg.source).stem if cfg.source.endswith((".yaml", ".yml")) else "search"
    return paths.local_path(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def validate(space: str | Path) -> Config:
    """Validate a search space without building anything; raises ConfigError with every problem."""
    from automl import config as config_mod

    return config_mod.load(space)


def leaderboard(run_dir: str | Path) -> pd.DataFrame:
    """The ranked leaderboard of a finished search."""
    from automl.leaderboard import read_leaderboard

    return read_leaderboard(paths.local_path(run_dir, "run dir"))


def export(run_dir: str | Path, out: str | Path, trial_id: str | None = None) -> Path:
    """Export the best (or the named) trial of a search to `out`."""
    from automl.export import export_checkpoint
    from automl.leaderboard import best_trial

    row = best_trial(leaderboard(run_dir), trial_id)
    return export_checkpoint(row["checkpoint"], paths.local_path(out, "--out"))


__all__ = ["SearchResult", "export", "leaderboard", "resume_search", "run_search", "validate"]
