"""Live search progress: a line per trial event with a running summary (not Tune's tables)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from automl.config.durations import format_duration
from automl.errors import root_cause
from automl.runs.history import OUT_OF_TIME
from automl.runs.location import restored_run
from automl.search.budget import TimeBudget


class ProgressPrinter(Callback):
    """Prints trial starts, epoch results, ends and errors, with counts and the best so far.
    A start line names the sampled values; `fixed` names the space's fixed knobs, printed
    once in the search's header instead."""

    def __init__(self, epochs: int, num_samples: int | None, log_dir: Path,
                 budget: TimeBudget | None = None, fixed: frozenset[str] = frozenset(),
                 objective: str = "val_accuracy") -> None:
        self.log_dir = log_dir
        self.objective = objective
        self.fixed = fixed
        self.epochs = epochs
        self.num_samples = num_samples
        self.budget = budget
        self.start = time.time()
        self.best: tuple[float, str] | None = None
        self.finished = self.stopped = self.errored = self.cut = 0
        self.running: set[str] = set()
        self.started: dict[str, float] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("fixed", frozenset())  # pickled by an older automl
        if (run := restored_run()) is not None:  # a moved run dir keeps its logs in it
            self.log_dir = run.local / self.log_dir.name

    def _say(self, text: str) -> None:
        elapsed = int(time.time() - self.start)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}", file=sys.stdout, flush=True)

    def _summary(self) -> str:
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else "best -"
        done = self.finished + self.stopped + self.errored + self.cut
        of = f" of {self.num_samples}" if self.num_samples else ""
        cut = f", {self.cut} cut by the budget" if self.cut else ""
        left = (f" | budget left {format_duration(self.budget.left())}"
                if self.budget is not None else "")
        return (f"{len(self.running)} running, {self.finished} finished, {self.stopped} stopped "
                f"early{cut}, {self.errored} errored{of} ({done} done) | {best}{left}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.budget is None:
            return
        if self.budget.expired:
            cut = (f": stopped {len(self.running)} trial(s) still in an epoch (their completed "
                   "epochs count)" if self.running else "")
            self._say(f"time budget of {format_duration(self.budget.seconds)} spent{cut}")
        elif self.num_samples is None or len(trials) < self.num_samples:
            self._say(f"time budget: {format_duration(self.budget.left())} left, less than any "
                      "trial has needed to its first result: no new trial started")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self.started.setdefault(trial.trial_id, time.time())
        cfg = trial.config
        knobs = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in cfg.items() if k != "backbone" and k not in self.fixed
        )
        self._say(f"start {trial.trial_id} {cfg.get('backbone')} {knobs}")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        objective = getattr(self, "objective", "val_accuracy")  # a restored older printer
        acc = result.get(objective)
        if acc is None:
            return
        if self.best is None or acc > self.best[0]:
            self.best = (acc, f"{trial.trial_id} {trial.config.get('backbone')}")
        first = ""
        if result.get("epoch") == 1 and isinstance(at := result.get("first_step_at"), float):
            first = f", startup {at - self.started.get(trial.trial_id, at):.1f}s"
        self._say(f"{trial.trial_id} epoch {result.get('epoch')}/{self.epochs} "
                  f"{objective} {acc:.4f}{first} | {self._summary()}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        epochs = (trial.last_result or {}).get("epoch", 0)
        if (trial.last_result or {}).get(OUT_OF_TIME):
            self.cut += 1
            self._say(f"{trial.trial_id} ended after epoch {epochs}: another would pass the "
                      f"time budget (its epochs count) | {self._summary()}")
        elif epochs >= self.epochs:
            self.finished += 1
            self._say(f"{trial.trial_id} finished | {self._summary()}")
        else:
            self.stopped += 1
            self._say(f"{trial.trial_id} stopped early by ASHA after {epochs} epoch(s) | "
                      f"{self._summary()}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.errored += 1
        text = error_text(trial)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{trial.trial_id}.error.txt"
        log.write_text(text)
        self._say(f"{trial.trial_id} errored: {root_cause(text)} | {self._summary()}")
        self._say(f"  full error: {log}")


def error_text(trial: Any) -> str:
    """Ray's full error text of a failed trial: Tune has just written it to the trial's local
    error file (`get_error` reads the storage copy, which is synced later)."""
    local = getattr(trial, "error_file", None)
    if local and Path(local).is_file():
        return Path(local).read_text()
    return str(trial.get_error() or "unknown error (no error file was written)")
