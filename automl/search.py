"""The only module that drives Ray Tune: OptunaSearch (TPE) + ASHA over TorchTrainer trials.

Train V2 pattern: each Tune trial is a small driver function that builds and fits a
`TorchTrainer`; `TuneReportCallback` forwards rank-0 metrics and checkpoint paths to Tune.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from automl.config import Config, ResourcesConfig
from automl.errors import AutomlError, TrialFailed
from automl.plan import make_plan
from automl.progress import ProgressPrinter
from automl.spaces import sample_trial

# The trial driver only waits on its TorchTrainer: it needs no CPU of its own. Ray refuses an
# all-zero request, so it asks for a little memory instead; CPUs go to the training workers.
DRIVER_RESOURCES: dict[str, float] = {"CPU": 0.0, "memory": 256.0 * 1024**2}
# Train V2 polls its workers every 2 s by default; trials are short, so poll faster.
# RAY_AIR_NEW_OUTPUT=0 with verbose=0: Tune prints nothing; ProgressPrinter reports instead.
_RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_AIR_NEW_OUTPUT": "0"}


@dataclass(frozen=True)
class TrialRecord:
    """One trial's outcome as plain values: what the leaderboard is built from."""

    trial_id: str
    params: dict[str, Any]
    history: list[dict[str, Any]]
    error: str | None
    trial_time_s: float


def init_ray(address: str | None = None) -> dict[str, float]:
    """Connect to `address` (a cluster) or start an embedded local Ray; return its resources."""
    if not ray.is_initialized():
        for key, value in _RAY_ENV.items():
            os.environ.setdefault(key, value)
        if address is None:
            # Ray 2.60 turns token auth on by default; the embedded cluster binds to localhost.
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            address=address,
            include_dashboard=address is None,  # needed: stopped trials free their groups
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": dict(_RAY_ENV)},
        )
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def plan_concurrency(res: ResourcesConfig, cluster: dict[str, float]) -> int:
    """How many trials fit at once, so driver + worker bundles can never deadlock."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    need_cpu = res.workers_per_trial * res.cpus_per_worker
    if need_cpu > cpus:
        raise AutomlError(
            f"resources: one trial needs workers_per_trial × cpus_per_worker = "
            f"{res.workers_per_trial} × {res.cpus_per_worker:g} = {need_cpu:g} CPUs, but the "
            f"cluster has {cpus:g}; lower them or add nodes"
        )
    fit = math.floor(cpus / need_cpu + 1e-9)
    if res.use_gpu:
        if gpus < res.workers_per_trial:
            raise AutomlError(
                f"resources.use_gpu: one trial needs {res.workers_per_trial} GPU(s), the cluster "
                f"has {gpus:g}; set use_gpu: false or add GPU nodes"
            )
        fit = min(fit, math.floor(gpus / res.workers_per_trial))
    return max(1, min(fit, res.max_concurrent_trials or fit))


def trial_driver(config: dict[str, Any], static: dict[str, Any], data: list[Any]) -> None:
    """One Tune trial: fit a TorchTrainer for the sampled plan, forwarding its reports."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from automl.train import train_loop_per_worker

    started = time.time()
    plan = make_plan(config, static)
    res = static["resources"]
    trial_id = tune.get_context().get_trial_id()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"plan": plan.to_dict(), "data": data, "trial_start": started,
                           "threads": max(1, int(res["cpus_per_worker"]))},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers_per_trial"],
            use_gpu=res["use_gpu"],
            resources_per_worker={"CPU": res["cpus_per_worker"]},
        ),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=static["trials_dir"],
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # the worker's own error, without Ray's wrapping
        raise TrialFailed(root_cause(exc)) from None


def root_cause(exc: BaseException) -> str:
    """The innermost 'SomeError: message' line of a (Ray-wrapped) exception."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        # The driver re-raises the worker's error as "TrialFailed: <worker error line>".
        while (match := _ERROR_LINE.match(line)) and _ERROR_LINE.match(match[2]):
            line = match[2]
        if _ERROR_LINE.match(line):
            return line
    return lines[-1] if lines else type(exc).__name__


_ERROR_LINE = re.compile(r"^([\w.]*(?:Error|Exception|TrialFailed)): (.*)$")


def run_trials(
    config: Config, static: dict[str, Any], data_ref: Any, run_dir: Path, concurrency: int
) -> list[TrialRecord]:
    """Run the whole search; return a record per trial (finished, stopped or errored)."""
    trials_dir = run_dir / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    static = {**static, "trials_dir": str(trials_dir),
              "resources": {"workers_per_trial": config.resources.workers_per_trial,
                            "cpus_per_worker": config.resources.cpus_per_worker,
                            "use_gpu": config.resources.use_gpu}}
    space = functools.partial(
        sample_trial, backbones=[b.label for b in config.backbones], space=config.space
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(
        space=space, metric=config.search.metric, mode="max",
        # Optuna's default is 10 random trials before TPE; small searches would never use TPE.
        sampler=optuna.samplers.TPESampler(
            seed=config.search.seed,
            n_startup_trials=min(10, max(2, config.search.num_samples // 3)),
        ),
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        metric=config.search.metric,
        mode="max",
        max_t=config.train.epochs,
        grace_period=config.search.grace_period,
        reduction_factor=config.search.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(trial_driver, static=static, data=[data_ref]), DRIVER_RESOURCES
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler,
            num_samples=config.search.num_samples, max_concurrent_trials=concurrency,
            trial_dirname_creator=_trial_dirname,
            # Reusing trial actors saves ≈3 s per trial, but in Ray 2.60 a trial queued behind
            # one ASHA stopped never starts ("requires reset_config()"): keep it off.
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(run_dir.resolve()),
            verbose=0,
            callbacks=[ProgressPrinter(config.train.epochs, config.search.num_samples)],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    grid = tuner.fit()
    return [_record(grid[i]) for i in range(len(grid))]


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def _record(result: Any) -> TrialRecord:
    history: list[dict[str, Any]] = []
    frame = result.metrics_dataframe
    if frame is not None and len(frame):
        history = frame.to_dict("records")
    metrics = result.metrics or {}
    params = dict(result.config or {})
    error = root_cause(result.error) if result.error is not None else None
    trial_id = metrics.get("trial_id") or Path(result.path).name
    return TrialRecord(str(trial_id), params, history, error,
                       float(metrics.get("time_total_s", 0.0)))
