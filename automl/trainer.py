"""One plan fitted by a Ray Train `TorchTrainer`: the search's trials and export's refit run
the same worker loop, checkpoints, failure handling and data sharding through here."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from automl.errors import TrialFailed, root_cause
from automl.plan import TrialPlan


def fit_plan(plan: TrialPlan, datasets: dict[str, Any], static: dict[str, Any], name: str,
             storage_path: str, callbacks: list[Any] | None = None,
             keep: str = "val_accuracy", started: float | None = None) -> Any:
    """Fit `plan` on `datasets` (`train` sharded over the workers, `val` read whole) with the
    resources in `static`; checkpoints under `storage_path/name`, keeping the best by `keep`
    plus the latest. Returns Ray Train's Result; TrialFailed carries the worker's error."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from automl.train import train_loop_per_worker

    res = static["resources"]
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"plan": plan.to_dict(), "trial_start": started or time.time(),
                           "steps_per_epoch": static.get("steps_per_epoch"),
                           "deadline": static.get("deadline"),
                           "threads": max(1, int(res["cpus_per_worker"]))},
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers_per_trial"],
            use_gpu=res["use_gpu"],
            resources_per_worker={"CPU": res["cpus_per_worker"]},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks,
            # The best by `keep`, plus the latest (Ray never deletes the latest): export
            # reads the best, a restart resumes from the latest.
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=keep,
                checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=static.get("max_restarts", 2)),
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
