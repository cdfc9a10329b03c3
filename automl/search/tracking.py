"""Tune callbacks that record a search: the run's own history (always) and, when asked,
MLflow and TensorBoard through Ray Tune's integrations."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ray.tune import Callback

from automl import storage
from automl.errors import AutomlError, root_cause
from automl.runs.history import (
    CHECKPOINT_PATH,
    DRIVER_LOST,
    HEARTBEAT_S,
    append_event,
    event,
    load_records,
    write_state,
)
from automl.runs.layout import HISTORY_FILE, MLFLOW_DB, STATE_FILE, TRIALS_DIR
from automl.runs.location import RunDir, restored_run
from automl.search.budget import TimeBudget
from automl.search.progress import error_text

UPLOAD_EVERY_S = 30.0
"""A remote run's history is uploaded this often while the search runs (and at the end)."""
_DROPPED = {"config", "trial_id", "experiment_tag", "hostname", "node_ip", "pid", "date"}


class HistoryWriter(Callback):
    """Appends every trial event to `RUN/trials.jsonl` as it happens and keeps a heartbeat
    in `RUN/state.json`; a remote run's copies are uploaded every `UPLOAD_EVERY_S`."""

    def __init__(self, run: RunDir, budget: TimeBudget | None = None) -> None:
        self.run = run
        self.path = run.local / HISTORY_FILE
        self.budget = budget
        self._beat = self._uploaded = 0.0
        self._open: set[str] = set()
        self._epochs: dict[str, int] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if (run := restored_run()) is not None:
            self.run, self.path = run, run.local / HISTORY_FILE

    def _append(self, line: str) -> None:
        append_event(self.path, line)

    def setup(self, stop: Any = None, num_samples: Any = None,
              total_num_samples: Any = None, **info: Any) -> None:
        write_state(self.run.local, "running")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open.add(trial.trial_id)
        self._append(event("start", trial.trial_id, params=dict(trial.config)))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        metrics = {k: v for k, v in result.items() if k not in _DROPPED}
        self._epochs[trial.trial_id] = int(result.get("epoch") or 0)
        self._append(event("result", trial.trial_id, metrics=metrics))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open.discard(trial.trial_id)
        self._append(event("end", trial.trial_id, error=None))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open.discard(trial.trial_id)
        self._append(event("end", trial.trial_id, error=root_cause(error_text(trial))))

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.time()
        if now - self._beat >= HEARTBEAT_S:
            self._beat = now
            write_state(self.run.local, "running")
        if self.run.remote and now - self._uploaded >= UPLOAD_EVERY_S:
            self.upload()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._close_forgotten({t.trial_id for t in trials})
        # Tune stops the trials still running when the budget is spent without calling
        # on_trial_complete: they ended, with their completed epochs, because time ran out.
        if self.budget is not None and self.budget.expired:
            for trial_id in sorted(self._open):
                for metrics in _kept_checkpoints(self.run.uri(TRIALS_DIR), trial_id):
                    if metrics["epoch"] > self._epochs.get(trial_id, 0):
                        self._append(event("result", trial_id, metrics=metrics))
                self._append(event("end", trial_id, error=None, cut="time_budget"))
            self._open.clear()
        self.upload()

    def _close_forgotten(self, known: set[str]) -> None:
        # A driver killed before Tune's next experiment snapshot (every few seconds) leaves
        # a started trial Tune does not know when resumed: it can never continue, so it ends
        # here as lost instead of keeping the run "interrupted" forever.
        if not self.path.is_file():
            return
        for record in load_records(self.run.local, self.run.location):
            if not record.ended and record.trial_id not in known:
                self._append(event("end", record.trial_id, error=None, cut=DRIVER_LOST))

    def upload(self) -> None:
        """Copy the history and state to a remote run's location (no-op when local)."""
        self._uploaded = time.time()
        if self.run.remote:
            for name in (HISTORY_FILE, STATE_FILE):
                if (self.run.local / name).is_file():
                    storage.upload(self.run.local / name, self.run.uri(name))


def _kept_checkpoints(trials_dir: str, trial_id: str) -> list[dict[str, Any]]:
    """The checkpoints Ray Train keeps for a trial stopped mid-epoch, as result metrics.

    A trial killed by the budget may have registered a newer checkpoint than the last result
    Tune forwarded; Ray's retention then deleted the one the history points at. Its
    checkpoint manager's snapshot (Ray Train's own file, read defensively) names the kept
    ones with their metrics, so the history can point at what is really on disk."""
    snapshot = storage.join(trials_dir, trial_id, "checkpoint_manager_snapshot.json")
    try:
        kept = json.loads(storage.read_text(snapshot)).get("checkpoint_results") or []
    except (OSError, ValueError):
        return []
    results = []
    for item in kept:
        metrics, name = item.get("metrics"), item.get("checkpoint_dir_name")
        if isinstance(metrics, dict) and isinstance(name, str) and "epoch" in metrics:
            location = storage.join(trials_dir, trial_id, name)
            results.append({**metrics, "training_iteration": metrics["epoch"],
                            CHECKPOINT_PATH: storage.filesystem(location)[1]})
    return results


def tracking_callbacks(mlflow: str | None, tensorboard: bool, experiment: str,
                       run: RunDir) -> list[Callback]:
    """Ray Tune's MLflow / TensorBoard logger callbacks. `mlflow`: a tracking URI, or `local`
    for an SQLite store inside the run (`RUN/mlflow.db`; MLflow 3 retired the plain-file
    store); None: off. TensorBoard event files go to each trial's folder under `RUN/tune/`.
    A tracking server that cannot be used is an error here, before any trial runs."""
    callbacks: list[Callback] = []
    if mlflow:
        try:
            import mlflow as mlflow_lib
            from ray.air.integrations.mlflow import MLflowLoggerCallback
        except ImportError:
            raise AutomlError("tracking.mlflow is set but MLflow is not installed; run "
                              "`pip install 'automl[tracking]'` (or remove tracking.mlflow)"
                              ) from None
        uri = f"sqlite:///{(run.local / MLFLOW_DB).resolve()}" if mlflow == "local" else mlflow
        quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
        saved = {k: os.environ.get(k) for k in quick}
        os.environ.update(quick)  # MLflow retries an unreachable server for minutes
        try:
            mlflow_lib.MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:
            raise AutomlError(f"tracking.mlflow: cannot use the MLflow tracking URI {uri!r}: "
                              f"{str(exc).splitlines()[0]}") from None
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment,
                                              save_artifact=False))
    if tensorboard:
        try:
            import tensorboardX  # noqa: F401
            from ray.tune.logger import TBXLoggerCallback
        except ImportError:
            raise AutomlError("tracking.tensorboard is on but tensorboardX is not installed; "
                              "run `pip install tensorboardX`") from None
        callbacks.append(TBXLoggerCallback())
    return callbacks
