"""`automl soup RUN` / `automl ensemble RUN` / `automl.combine(...)`: combine the trials of
a finished search (local or remote), record the result in the run (issue 29)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import storage
from automl.combine.result import COMBINED_JSON, KINDS, Combination
from automl.errors import AutomlError
from automl.ownership import write_atomic
from automl.runs.selection import Constraints, best_trial

if TYPE_CHECKING:
    pass


def combine(run_dir: str | Path, kinds: Sequence[str] = KINDS, max_size: int = 20,
            max_latency_ms: float | None = None, constraints: Constraints | None = None,
            address: str | None = None, use_gpu: bool | None = None,
            log: Callable[[str], Any] = print) -> Combination:
    """Greedy soups (`"soup"`) and ensemble selection (`"ensemble"`) over the trials of the
    search at `run_dir`, each chosen on its validation split and compared with the best
    single trial by cross-fitting over the split's halves, then scored on its test split;
    written to `RUN/combined/combined.json` (soups' checkpoints beside it). Forward passes
    run as Ray tasks (`address`, default embedded); `use_gpu` defaults to what the search's
    trials used."""
    from automl.combine.build import combine_rows
    from automl.runs.read import load_run, read_context, write_report
    from automl.search import ray_session

    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise AutomlError(f"combine: unknown kind(s) {unknown}; choose from {list(KINDS)}")
    if max_size < 1:
        raise AutomlError(f"--max-size {max_size}: an ensemble needs at least one member")
    run, board, records = load_run(run_dir, constraints)
    context = read_context(run)
    if context is None or not context.data_root:
        raise AutomlError(f"{run}: the run does not record where its prepared data is (a run "
                          "from an older automl); soups and ensembles need it")
    if not storage.exists(context.data_root):
        raise AutomlError(f"{run}: its prepared data is gone ({context.data_root}); run the "
                          "search again to combine its trials")
    selected = str(best_trial(board)["trial_id"])
    if use_gpu is None:
        use_gpu = _trials_used_gpu(run.local)
    ray_session.init_ray(address)
    limits = constraints or Constraints()
    result = combine_rows(board, selected, context.data_root, run.location, context.metric,
                          tuple(kinds), max_size, max_latency_ms or limits.max_latency_ms,
                          use_gpu, log, max_params=limits.max_params)
    save_combined(run, result, log)
    log(f"report: {write_report(run, board, records, constraints)}")
    return result


def save_combined(run: Any, result: Combination, log: Callable[[str], Any]) -> None:
    """Write `result` to `RUN/combined/combined.json` whole."""
    text = json.dumps(result.to_json(), indent=2, default=float)
    if run.remote:
        storage.write_text(run.uri(COMBINED_JSON), text)
    else:
        write_atomic(run.local / COMBINED_JSON, text)
    log(f"soups and ensemble written to {run.uri(COMBINED_JSON)}")


def _trials_used_gpu(local: Path) -> bool:
    from automl.runs.layout import CONFIG_FILE

    config = local / CONFIG_FILE
    if not config.is_file():
        return False
    return bool(json.loads(config.read_text()).get("resources", {}).get("use_gpu"))
