"""Which trial failures are retried: lost workers, processes and nodes, yes; our own errors, no.

Ray Train's default policy restarts a worker group after any worker error, up to
`FailureConfig.max_failures`. That is right for a killed process or a lost node, but a trial
whose loss became NaN or whose backbone cannot load fails the same way every time: retrying it
costs one worker-group start (≈15-25 s) and the lost epochs per attempt, for nothing. So the
trial driver swaps in a policy that raises at once when a worker failed with `TrialFailed` or
an `AutomlError` (deterministic by construction), or when every failed worker raised a plain
error of the training code, and defers to Ray's policy otherwise.

Ray has no public hook for this (2.5x/2.60), so the policy factory is replaced in the trial
driver's process; if Ray moves it, `install` does nothing and such trials are simply retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from automl import ray_internals
from automl.errors import AutomlError, TrialFailed

DETERMINISTIC = (TrialFailed, AutomlError)
TRANSIENT = (OSError, TimeoutError, ConnectionError)
"""Raised by training code but worth a retry: storage and network hiccups."""


def is_deterministic(error: BaseException) -> bool:
    """True when a failed group's workers raised errors that a retry would raise again:
    one of ours anywhere, or, on every failed worker, an exception of the training code
    itself (a lr that overflows, a shape error). Lost workers and nodes show up as Ray's own
    errors on at least one rank (a surviving DDP rank's collective error alone is not
    enough), and storage/network errors are transient: those are retried."""
    failures = [getattr(f, "_base_exc", f) for f in
                (getattr(error, "worker_failures", None) or {}).values()]
    if any(isinstance(f, DETERMINISTIC) for f in failures):
        return True
    return bool(failures) and not any(isinstance(f, _system_errors()) for f in failures)


def is_deterministic_error(error: BaseException) -> bool:
    """The same rule for one error raised by the training loop in a trial's own process."""
    return isinstance(error, DETERMINISTIC) or not isinstance(error, _system_errors())


def _system_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import RayError

    train_error = ray_internals.ray_train_error()
    return (RayError, *([train_error] if train_error else []), *TRANSIENT)


def install() -> bool:
    """Use the no-retry-for-deterministic-errors policy for TorchTrainers built in this
    process; False when this Ray version has no such factory to replace."""
    found = ray_internals.failure_policy()
    if found is None:
        return False
    DefaultFailurePolicy, FailureDecision, data_parallel_trainer = found

    class NoRetryOnOwnErrors(DefaultFailurePolicy):  # type: ignore[misc,valid-type]
        def make_decision(self, training_failed_error: Any) -> Any:
            if is_deterministic(training_failed_error):
                return FailureDecision.RAISE
            return super().make_decision(training_failed_error)

    data_parallel_trainer.create_failure_policy = NoRetryOnOwnErrors  # type: ignore[attr-defined]
    return True


def pin_cluster_address() -> None:
    """Make Ray Train's placement-group cleaner find this cluster when several Ray instances
    run on one machine (two searches side by side, or a search next to tests).

    When a trial's controller dies (the trial errored, or ASHA stopped it), a detached
    cleaner actor frees its workers' placement group, asking Ray's state API whether the
    controller still lives. Without `RAY_ADDRESS` that API looks for a local Ray instance,
    finds several, raises "Found multiple active Ray instances" in the cleaner's thread, and
    the group's CPUs stay reserved forever: later trials wait for a placement group with the
    CPUs idle. Setting the address here and having Ray Train pass it on to the controller
    (and so to the cleaner it starts) avoids that. Private Ray API: does nothing if moved."""
    import os

    import ray

    propagated = ray_internals.train_env_vars_to_propagate()
    if propagated is None:
        return
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    propagated.add("RAY_ADDRESS")


def lost_process(error: BaseException) -> bool:
    """True when a Tune trial failed because its process or node went away (killed, out of
    memory, node lost), not because of an error its code raised."""
    from ray.exceptions import (
        NodeDiedError,
        OutOfMemoryError,
        RayActorError,
        RayTaskError,
        WorkerCrashedError,
    )

    if isinstance(error, RayTaskError):
        error = error.as_instanceof_cause()
    return isinstance(error, (RayActorError, WorkerCrashedError, NodeDiedError,
                              OutOfMemoryError))


@contextlib.contextmanager
def tune_retries_lost_trials_only() -> Iterator[None]:
    """While the search runs, Tune retries a trial (its FailureConfig) only when the trial's
    process or node was lost; a trial whose code raised has already had the retries that
    make sense (`automl.trial.executors`) and ends at once.

    Tune retries every failure alike and has no hook for this (2.60), so its controller's
    failure handler is wrapped for the duration of the search only. If Ray moves it, every
    failure is retried, and the failed trial's `failed.txt` makes each retry fail at once."""
    TuneController = ray_internals.tune_controller()
    if TuneController is None:
        yield
        return
    original = TuneController._process_trial_failure

    def process_trial_failure(self: Any, trial: Any, exception: Any) -> Any:
        if not lost_process(exception):
            trial.max_failures = 0
        return original(self, trial, exception)

    TuneController._process_trial_failure = process_trial_failure
    try:
        yield
    finally:
        TuneController._process_trial_failure = original
