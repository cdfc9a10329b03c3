"""Top-level Python API: the one place that wires config → data → search → leaderboard → export."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from automl import config as config_mod
from automl.config import Config
from automl.errors import AutomlError
from automl.export import export_checkpoint
from automl.leaderboard import (
    best_trial,
    build_leaderboard,
    format_leaderboard,
    read_leaderboard,
    write_leaderboard,
)
from automl.plan import static_block


@dataclass(frozen=True)
class SearchResult:
    """What a finished search leaves behind."""

    run_dir: Path
    leaderboard: pd.DataFrame
    export_dir: Path | None
    wall_time_s: float


def run_search(
    space: str | Path | Config,
    data: str | None = None,
    run_dir: str | Path | None = None,
    num_samples: int | None = None,
    address: str | None = None,
    log: Any = print,
) -> SearchResult:
    """Search transfer configurations for `space` (a YAML path or Config) on local Ray or a
    cluster (`address`), write the leaderboard and export the best model into `run_dir`."""
    from automl import search
    from automl.prepare import preflight_backbones, prepare_data

    started = time.time()
    overrides = {"data.path": data, "search.num_samples": num_samples}
    if isinstance(space, Config):
        cfg = space
        if data or num_samples:
            raise AutomlError("pass data/num_samples inside the Config when giving a Config")
    else:
        cfg = config_mod.load(space, overrides)
    out = Path(run_dir) if run_dir else _default_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    preprocessing = preflight_backbones(cfg)
    payload, classes, summary = prepare_data(cfg, preprocessing)
    log(summary)
    cluster = search.init_ray(address)
    concurrency = search.plan_concurrency(cfg.resources, cluster)
    log(f"Ray: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs → "
        f"{concurrency} trial(s) at a time; {cfg.search.num_samples} trials, "
        f"{cfg.train.epochs} epoch(s) max each; run dir {out}")
    static = static_block(cfg, classes, preprocessing)
    (out / "static.json").write_text(json.dumps(static, indent=2))
    import ray

    records = search.run_trials(cfg, static, ray.put(payload), out, concurrency)
    board = build_leaderboard(records, static)
    write_leaderboard(board, out)
    export_dir = None
    if board["checkpoint"].apply(lambda c: isinstance(c, str)).any():
        export_dir = export_checkpoint(best_trial(board)["checkpoint"], out / "export")
    wall = time.time() - started
    (out / "summary.json").write_text(json.dumps({
        "wall_time_s": wall, "concurrency": concurrency, "trials": len(board),
        "status_counts": board["status"].value_counts().to_dict(),
        "best_val_accuracy": _float(board["val_accuracy"].max()),
        "export_dir": str(export_dir) if export_dir else None,
    }, indent=2))
    return SearchResult(out, board, export_dir, wall)


def _float(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def _default_run_dir(cfg: Config) -> Path:
    name = Path(cfg.source).stem if cfg.source.endswith((".yaml", ".yml")) else "search"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def validate(space: str | Path) -> Config:
    """Validate a search space without building anything; raises ConfigError with every problem."""
    return config_mod.load(space)


def leaderboard(run_dir: str | Path) -> pd.DataFrame:
    """The ranked leaderboard of a finished search."""
    return read_leaderboard(run_dir)


def export(run_dir: str | Path, out: str | Path, trial_id: str | None = None) -> Path:
    """Export the best (or the named) trial of a search to `out`."""
    row = best_trial(read_leaderboard(run_dir), trial_id)
    return export_checkpoint(row["checkpoint"], out)


__all__ = ["SearchResult", "export", "format_leaderboard", "leaderboard", "run_search", "validate"]
