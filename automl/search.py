"""The only module that drives Ray Tune: OptunaSearch (TPE) + ASHA over TorchTrainer trials.

Train V2 pattern: each Tune trial is a small driver function that builds and fits a
`TorchTrainer`; `TuneReportCallback` forwards rank-0 metrics and checkpoint paths to Tune.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from automl.config import Config, ResourcesConfig
from automl.errors import AutomlError, TrialFailed, root_cause
from automl.leaderboard import TrialRecord
from automl.plan import make_plan
from automl.progress import ProgressPrinter
from automl.spaces import sample_trial

# The trial driver only waits on its TorchTrainer: it needs no CPU of its own. Ray refuses an
# all-zero request, so it asks for a little memory instead; CPUs go to the training workers.
DRIVER_RESOURCES: dict[str, float] = {"CPU": 0.0, "memory": 256.0 * 1024**2}
# Train V2 polls its workers every 2 s by default; trials are short, so poll faster.
# RAY_AIR_NEW_OUTPUT=0 with verbose=0: Tune prints nothing; ProgressPrinter reports instead.
_RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_AIR_NEW_OUTPUT": "0"}
# Tune would log every trial failure with Ray's full traceback; the progress line shows the
# root cause and the full text goes to RUN/logs/<trial>.error.txt instead.
_DRIVER_ENV = {"TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}
LOG_DIR = "logs"


def init_ray(address: str | None = None) -> dict[str, float]:
    """Connect to `address` (a cluster) or start an embedded local Ray; return its resources.

    A cluster address is probed first: `ray.init` on an unreachable address retries for
    minutes, printing C++ warnings, before it gives up.
    """
    if not ray.is_initialized():
        os.environ.update({k: v for k, v in _DRIVER_ENV.items() if k not in os.environ})
        for key, value in _RAY_ENV.items():
            os.environ.setdefault(key, value)
        if address is None:
            # Ray 2.60 turns token auth on by default; the embedded cluster binds to localhost.
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        else:
            _probe_address(address)
        _route_raylet_messages()
        try:
            ray.init(
                address=address,
                include_dashboard=address is None,  # needed: stopped trials free their groups
                dashboard_host="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": dict(_RAY_ENV)},
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AutomlError(f"--address {address}: cannot connect to Ray: "
                              f"{root_cause(exc)}") from None
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def _probe_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, with a hint, when nothing listens at a `HOST:PORT` / `ray://` address."""
    if address in ("auto", "local"):
        return  # Ray itself answers at once when no local cluster runs
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host:
        host, port = target, "10001" if address.startswith("ray://") else "6379"
    if not port.isdigit():
        raise AutomlError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        raise AutomlError(
            f"--address {address}: no Ray cluster answers at {host}:{port} ({exc.strerror or exc})"
            "; start one with `ray start --head` (port 6379; Ray Client on 10001), check the "
            "address, or leave --address out to run on an embedded local Ray"
        ) from None


# Ray Train V2 runs about eight actor processes per trial (the Tune trial actor, its report
# queue, TrainController, PlacementGroupCleaner, SynchronizationActor, DatasetManager,
# PreemptionWatcher, and the training workers). Two concurrent trials on a 2-CPU node pass the
# raylet's "4 x CPUs" threshold, and it prints "(raylet) WARNING: N PYTHON worker processes
# have been started" on the driver's terminal. The processes are expected and exit with their
# trial (not a leak), so these lines go to the run's ray.log; other raylet messages still
# reach the terminal. Ray prints them from a thread of its own, through this private function.
_BENIGN_RAYLET = ("worker processes have been started",)
_raylet_log: list[Path] = []


def _route_raylet_messages() -> None:
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_automl", False):
        return

    def route(data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = list(data.get("lines", []))
        if data.get("pid") == "raylet" and _raylet_log:
            with _raylet_log[-1].open("a") as log:
                log.writelines(f"(raylet) {line}\n" for line in lines)
            lines = [ln for ln in lines if not any(b in ln for b in _BENIGN_RAYLET)]
            if not lines:
                return
        original({**data, "lines": lines}, ignore_prefix)

    route._automl = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = route


@contextmanager
def ray_logs_to(path: Path) -> Iterator[None]:
    """Send Ray's Python log output (trial failures, warnings) and the raylet's benign worker
    count warnings to `path`, not the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _raylet_log.append(path)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved: dict[logging.Logger, list[logging.Handler]] = {}
    names = ["ray", *(n for n in logging.root.manager.loggerDict if n.startswith("ray."))]
    for name in names:
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers if type(h) is not logging.FileHandler
                   and isinstance(h, logging.StreamHandler)]
        if streams or name == "ray":
            saved[logger] = list(logger.handlers)
            logger.handlers = [h for h in logger.handlers if h not in streams]
            if name == "ray" or not logger.propagate:
                logger.addHandler(handler)
    try:
        yield
    finally:
        _raylet_log.remove(path)
        for logger, handlers in saved.items():
            logger.handlers = handlers
        handler.close()


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
    except Exception as exc:
        # First line: the worker's own error, without Ray's wrapping (board, progress line).
        # Then Ray Train's full text with the worker's traceback, for RUN/logs/<trial>.error.txt.
        raise TrialFailed(f"{root_cause(exc)}\n\nTraining worker error:\n{exc}") from None


def run_trials(
    config: Config, static: dict[str, Any], data_ref: Any, run_dir: Path, concurrency: int
) -> list[TrialRecord]:
    """Run the whole search; return a record per trial (finished, stopped or errored).

    `run_dir` must be absolute: Ray Train rejects relative storage paths.
    """
    if not run_dir.is_absolute():
        raise ValueError(f"run_dir must be absolute (see automl.paths.resolve), got {run_dir}")
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
            storage_path=str(run_dir),
            verbose=0,
            callbacks=[ProgressPrinter(config.train.epochs, config.search.num_samples,
                                       run_dir / LOG_DIR)],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    with ray_logs_to(run_dir / LOG_DIR / "ray.log"):
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
