"""Which trial failures Ray Train retries: lost workers and nodes, yes; our own errors, no.

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

from typing import Any

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
    from ray.exceptions import RayError
    from ray.train.v2._internal.exceptions import RayTrainError

    failures = [getattr(f, "_base_exc", f) for f in
                (getattr(error, "worker_failures", None) or {}).values()]
    if any(isinstance(f, DETERMINISTIC) for f in failures):
        return True
    system = (RayError, RayTrainError, *TRANSIENT)
    return bool(failures) and not any(isinstance(f, system) for f in failures)


def install() -> bool:
    """Use the no-retry-for-deterministic-errors policy for TorchTrainers built in this
    process; False when this Ray version has no such factory to replace."""
    try:
        from ray.train.v2._internal.execution.failure_handling import (
            DefaultFailurePolicy,
            FailureDecision,
        )
        from ray.train.v2.api import data_parallel_trainer
    except ImportError:
        return False
    if not hasattr(data_parallel_trainer, "create_failure_policy"):
        return False

    class NoRetryOnOwnErrors(DefaultFailurePolicy):
        def make_decision(self, training_failed_error: Any) -> Any:
            if is_deterministic(training_failed_error):
                return FailureDecision.RAISE
            return super().make_decision(training_failed_error)

    data_parallel_trainer.create_failure_policy = NoRetryOnOwnErrors  # type: ignore[assignment]
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

    try:
        from ray.train.v2._internal import constants
    except ImportError:
        return
    propagated = getattr(constants, "ENV_VARS_TO_PROPAGATE", None)
    if not isinstance(propagated, set):
        return
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    propagated.add("RAY_ADDRESS")
