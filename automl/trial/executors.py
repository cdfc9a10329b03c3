"""One plan fitted: the search's trials and export's refit run the same training loop,
checkpoints, failure handling and data sharding through here.

Multi-worker plans (and export's refit, whose data must not come to the user's process) run
in a Ray Train `TorchTrainer`; a single-worker trial runs the same loop in its Tune trial
process (`fit_in_process`), skipping the worker group's ≈20 s start. A trial's own error is
also written next to its checkpoints: should Tune restart it anyway (`automl.trial.failures`), it
fails at once instead of training into the same error.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from automl import storage
from automl.errors import TrialFailed, root_cause
from automl.trial import failures, loop
from automl.trial.checkpoints import retention
from automl.trial.context import LoopSettings, SearchContext
from automl.trial.decode import decode_workers
from automl.trial.plan import TrialPlan
from automl.trial.workers import InProcessWorker, in_process_supported

FAILED_FILE = "failed.txt"
"""In a trial's checkpoint directory: the error that ended it (re-raised on a restart)."""


def fit_trial(plan: TrialPlan, datasets: dict[str, Any], context: SearchContext, name: str,
              storage_path: str, callbacks: list[Any] | None = None,
              started: float | None = None) -> None:
    """One search trial: in this process when it has one worker (and Ray allows it), else in a
    TorchTrainer whose reports `callbacks` forward to Tune."""
    failed = storage.join(storage_path, name, FAILED_FILE)
    if storage.exists(failed):
        raise TrialFailed(storage.read_text(failed))
    try:
        if in_process(context):
            fit_in_process(plan, datasets, context, name, storage_path,
                           keep=context.objective, started=started)
        else:
            fit_plan(plan, datasets, context, name, storage_path, callbacks,
                     keep=context.objective, started=started)
    except TrialFailed as exc:
        storage.write_text(failed, str(exc))
        raise


def in_process(context: SearchContext) -> bool:
    """True when a trial trains in its own Tune process: one worker per trial (and
    `resources.single_worker_in_trial`, the default)."""
    res = context.resources
    return res.workers_per_trial == 1 and res.single_worker_in_trial and in_process_supported()


def fit_in_process(plan: TrialPlan, datasets: dict[str, Any], context: SearchContext,
                   name: str, storage_path: str, keep: str = "val_accuracy",
                   started: float | None = None) -> None:
    """Run the training loop here, reporting to Tune; after an error a retry would not
    repeat (a storage hiccup, a lost object), resume from the latest checkpoint, up to
    `max_restarts` times. A lost process is Tune's to restart (its FailureConfig)."""
    import traceback


    settings, restarts = _loop_settings(plan, context, started), context.max_restarts
    for attempt in range(restarts + 1):
        worker = InProcessWorker(datasets, storage_path, name, keep,
                                 context.resources.use_gpu)
        try:
            return loop.train_loop(settings, worker)
        except Exception as exc:
            if failures.is_deterministic_error(exc) or attempt == restarts:
                raise TrialFailed(f"{root_cause(exc)}\n\nTraining error:\n"
                                  f"{traceback.format_exc()}") from None


def fit_plan(plan: TrialPlan, datasets: dict[str, Any], context: SearchContext, name: str,
             storage_path: str, callbacks: list[Any] | None = None,
             keep: str = "val_accuracy", started: float | None = None) -> Any:
    """Fit `plan` on `datasets` (`train` sharded over the workers, `val` read whole) with the
    resources in `context`; checkpoints under `storage_path/name`, keeping the best by `keep`
    plus the latest. Returns Ray Train's Result; TrialFailed carries the worker's error."""
    import ray.train
    from ray.train.torch import TorchTrainer


    res = context.resources
    trainer = TorchTrainer(
        loop.train_loop_per_worker,
        train_loop_config=_loop_settings(plan, context, started).to_dict(),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers_per_trial,
            use_gpu=res.use_gpu,
            resources_per_worker={"CPU": res.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks,
            checkpoint_config=retention(keep),
            failure_config=ray.train.FailureConfig(max_failures=context.max_restarts),
        ),
    )
    # On the main thread (export's refit) fit() installs a SIGINT handler that holds the
    # controller's handle for good: the controller and its placement group would outlive the
    # fit and starve later trials. Putting the caller's handler back frees them.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if on_main else None
    try:
        return trainer.fit()
    except Exception as exc:
        # First line: the worker's own error, without Ray's wrapping (board, progress line).
        # Then Ray Train's full text with the worker's traceback, for RUN/logs/<trial>.error.txt.
        raise TrialFailed(f"{root_cause(exc)}\n\nTraining worker error:\n{exc}") from None
    finally:
        if on_main:
            signal.signal(signal.SIGINT, previous if previous is not None
                          else signal.default_int_handler)


def _loop_settings(plan: TrialPlan, context: SearchContext, started: float | None
                   ) -> LoopSettings:
    return LoopSettings(
        plan=plan, trial_start=started or time.time(), steps_per_epoch=context.steps_per_epoch,
        deadline=context.deadline, threads=max(1, int(context.resources.cpus_per_worker)),
        # Set by the search only (`features_dir`): export's refit trains on other data.
        features_dir=context.features_dir, train_rows=context.data.train_rows,
        # A GPU worker decodes in processes on its other CPUs; a CPU worker's threads all
        # train, and it decodes inline.
        decode_workers=(decode_workers(context.resources.cpus_per_worker)
                        if context.resources.use_gpu else 0),
    )
