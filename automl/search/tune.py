"""The only module that drives Ray Tune: OptunaSearch (TPE) + ASHA over the trials.

A single-worker trial trains in its Tune trial process (`automl.trial.executors.fit_in_process`),
holding the worker's CPUs (or GPU) itself. A multi-worker trial follows Ray Train V2's
pattern: a small driver function builds and fits a `TorchTrainer`, and
`TuneReportCallback` forwards rank-0 metrics and checkpoint paths to Tune.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import optuna
import ray
from optuna.distributions import BaseDistribution
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from automl import storage
from automl.config.schema import Config, ResourcesConfig
from automl.config.spaces import sample_trial
from automl.errors import AutomlError
from automl.ray_internals import HEAD_NODE_RESOURCE
from automl.runs.history import TrialRecord, load_records
from automl.runs.layout import LOG_DIR, SEEDS_TUNE_DIR, TRIALS_DIR, TUNE_DIR
from automl.runs.legacy import install_old_module_paths
from automl.runs.location import RunDir, restoring_into
from automl.search.budget import TimeBudget
from automl.search.progress import ProgressPrinter
from automl.search.ray_session import ray_logs_to
from automl.search.schedulers import TolerantASHA
from automl.search.tracking import HistoryWriter, tracking_callbacks
from automl.trial import failures
from automl.trial.context import SearchContext, make_plan
from automl.trial.executors import fit_trial, in_process
from automl.trial.features import FEATURES_DIR

# A multi-worker trial's driver only waits on its TorchTrainer: it needs no CPU of its own (Ray
# refuses an all-zero request, so it asks for a little memory); CPUs go to the training
# workers. It runs on the head node, so losing a worker node costs its trials a restart of
# their worker groups (Ray Train's FailureConfig, from the latest checkpoint), never the trial.
DRIVER_RESOURCES: dict[str, float] = {"CPU": 0.0, "memory": 256.0 * 1024**2,
                                      HEAD_NODE_RESOURCE: 0.001}
LIMIT_REFRESH_S = 2.0
"""How often the concurrency limit re-reads the cluster's resources."""
EXPERIMENT_SNAPSHOT_S = 2.0
"""How often Tune saves the experiment state `--resume` restores (unless
TUNE_GLOBAL_CHECKPOINT_S is set)."""


def trials_that_fit(res: ResourcesConfig, cluster: dict[str, float]) -> int:
    """How many trials the cluster's resources hold at once right now (0: not even one),
    capped by resources.max_concurrent_trials."""
    fit = math.floor(cluster.get("CPU", 0.0) / (res.workers_per_trial * res.cpus_per_worker)
                     + 1e-9)
    if res.use_gpu:
        fit = min(fit, math.floor(cluster.get("GPU", 0.0) / res.workers_per_trial + 1e-9))
    return min(fit, res.max_concurrent_trials or fit)


def plan_concurrency(res: ResourcesConfig, cluster: dict[str, float], can_grow: bool = False
                     ) -> int:
    """Trials at once at the start. On a fixed cluster (the embedded local Ray) a trial that
    can never fit is an error; on a cluster that `can_grow` (autoscaling) one trial waits for
    the nodes it needs, and `ClusterSizedLimiter` raises the limit as nodes join."""
    fit = trials_that_fit(res, cluster)
    if fit == 0 and not can_grow:
        need_cpu = res.workers_per_trial * res.cpus_per_worker
        if need_cpu > cluster.get("CPU", 0.0):
            raise AutomlError(
                f"resources: one trial needs workers_per_trial × cpus_per_worker = "
                f"{res.workers_per_trial} × {res.cpus_per_worker:g} = {need_cpu:g} CPUs, but "
                f"the cluster has {cluster.get('CPU', 0.0):g}; lower them or add nodes")
        raise AutomlError(
            f"resources.use_gpu: one trial needs {res.workers_per_trial} GPU(s), the cluster "
            f"has {cluster.get('GPU', 0.0):g}; set use_gpu: false or add GPU nodes")
    return max(1, fit)


class ClusterSizedLimiter(ConcurrencyLimiter):
    """Tune's ConcurrencyLimiter with a limit that follows the cluster's current resources
    (re-read every few seconds): as an autoscaling cluster adds nodes, more trials run; with
    none that fits yet, one trial waits (its pending resource request is the autoscaler's
    demand). Multi-worker trials' drivers need no CPU, so this limit, not Ray's scheduler, is
    what keeps TPE from sampling every trial before any result is in."""

    def __init__(self, searcher: Searcher, resources: ResourcesConfig, start: int,
                 budget: TimeBudget | None = None) -> None:
        super().__init__(searcher, max_concurrent=start)
        self.resources = resources
        self.budget = budget
        self.first_epoch_s: float | None = None
        """The quickest trial start → first result so far (Tune's time_total_s)."""
        self._checked = time.monotonic()

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if result.get("training_iteration") == 1 and "time_total_s" in result:
            seen = float(result["time_total_s"])
            self.first_epoch_s = min(seen, self.first_epoch_s or seen)
        super().on_trial_result(trial_id, result)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        # A trial that cannot reach its first result before the budget is spent would only
        # take CPUs from the running ones: the search samples no more.
        if (self.budget is not None and self.first_epoch_s is not None
                and self.budget.left() < self.first_epoch_s):
            self.budget.sampling_stopped = True
            return Searcher.FINISHED  # type: ignore[return-value] # Ray's hint omits it
        if time.monotonic() - self._checked > LIMIT_REFRESH_S:
            self._checked = time.monotonic()
            cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
            self.max_concurrent = max(1, trials_that_fit(self.resources, cluster))
        return super().suggest(trial_id)


def trial_driver(config: dict[str, Any], context: SearchContext,
                 datasets: dict[str, dict[str, Any]]) -> None:
    """One Tune trial: fit the sampled plan on the prepared datasets of its backbone's
    variant, here (one worker) or in a TorchTrainer (training split sharded over the
    workers) whose reports are forwarded."""
    started = time.time()
    callbacks = []
    if not in_process(context):
        from ray.tune.integration.ray_train import TuneReportCallback

        # This process only drives one trial: patching Ray Train's failure policy and setting
        # RAY_ADDRESS here touch nothing else (export's refit, in the user's process, does not).
        failures.install()
        failures.pin_cluster_address()
        callbacks = [TuneReportCallback()]
    variant = context.variant_of[config["backbone"]]
    if context.data_root and context.feature_cache:
        context = context.replace(features_dir=storage.join(context.data_root, variant,
                                                            FEATURES_DIR))
    fit_trial(make_plan(config, context), datasets[variant], context,
              name=tune.get_context().get_trial_id(), storage_path=str(context.trials_dir),
              callbacks=callbacks, started=started)


def trial_resources(context: SearchContext) -> dict[str, float]:
    """What Tune reserves for one trial: the worker's CPUs (and GPU) when the trial trains in
    its own process, else the driver's token request (the worker group reserves the rest)."""
    res = context.resources
    if not in_process(context):
        return DRIVER_RESOURCES
    return {"CPU": float(res.cpus_per_worker), **({"GPU": 1.0} if res.use_gpu else {})}


def can_restore(run: RunDir) -> bool:
    """True when the run has a Tune experiment to continue (`--resume` after Tune started)."""
    return bool(tune.Tuner.can_restore(run.uri(TUNE_DIR)))


def run_trials(
    config: Config, context: SearchContext, datasets: dict[str, dict[str, Any]], run: RunDir,
    concurrency: int, resume: bool = False, budget: TimeBudget | None = None,
    first_points: list[dict[str, Any]] | None = None,
) -> list[TrialRecord]:
    """Run the whole search over materialized datasets (variant key → split → Dataset);
    return a record per trial (finished, stopped, out of time or errored). `budget` stops
    the search when spent (a resumed search keeps the one it started with); `first_points`
    (partial configs, e.g. the best-ranked backbones) are tried first.

    Trial checkpoints (`trials/`) and the Tune experiment (`tune/`) go straight to the run's
    location (a path or storage URI); progress and Ray's log to the driver's `run.local`.
    """
    trials_dir = run.uri(TRIALS_DIR)
    storage.make_dirs(trials_dir)
    context = context.replace(trials_dir=trials_dir,
                              deadline=budget.deadline() if budget is not None else None)
    searcher = make_searcher(config, first_points)
    trainable = _trainable(context, datasets)
    experiment = run.uri(TUNE_DIR)
    _tune_settings()
    if resume and can_restore(run):
        return _restore(experiment, trainable, run)
    limiter = ClusterSizedLimiter(searcher, config.resources, concurrency, budget)
    return _fit(_tuner(config, trainable, run, TUNE_DIR, limiter, make_scheduler(config),
                       config.search.max_trials or -1, budget), run)


def make_searcher(config: Config, first_points: list[dict[str, Any]] | None = None,
                  sampler: optuna.samplers.BaseSampler | None = None) -> OptunaSearch:
    """The search's sampler as Tune drives it: Optuna (TPE or random; `sampler` replaces it)
    over the space, define-by-run (`sample_trial`), `first_points` enqueued first."""
    space = functools.partial(
        sample_trial, backbones=[b.label for b in config.backbones], space=config.space,
        feature_cache=config.train.feature_cache and config.resources.workers_per_trial == 1,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(
        space=space, metric=config.search.objective, mode="max",
        points_to_evaluate=first_points or None,
        sampler=sampler or _sampler(config),
    )


def run_seed_trials(config: Config, context: SearchContext,
                    datasets: dict[str, dict[str, Any]], run: RunDir, concurrency: int,
                    points: list[dict[str, Any]], resume: bool = False,
                    budget: TimeBudget | None = None) -> list[TrialRecord]:
    """The final-seeds phase (`search.final_seeds`): each of `points` (a configuration with
    its `seed`) trains all its epochs, no early stopping, as its own Tune experiment in the
    run (`tune-seeds/`, which `--resume` continues); returns every trial's record."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    context = context.replace(trials_dir=run.uri(TRIALS_DIR),
                              deadline=budget.deadline() if budget is not None else None)
    trainable = _trainable(context, datasets)
    experiment = run.uri(SEEDS_TUNE_DIR)
    _tune_settings()
    if resume and tune.Tuner.can_restore(experiment):
        return _restore(experiment, trainable, run)
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=concurrency)
    return _fit(_tuner(config, trainable, run, SEEDS_TUNE_DIR, generator, FIFOScheduler(),
                       len(points), budget, _space_of(points)), run)


def _space_of(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A param space that holds every value of `points`: Tune's variant generator only
    accepts preset points whose keys the param space has."""
    values: dict[str, list[Any]] = {}
    for point in points:
        for key, value in point.items():
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    return {key: tune.choice(seen) for key, seen in values.items()}


def _trainable(context: SearchContext, datasets: dict[str, dict[str, Any]]) -> Any:
    return tune.with_resources(
        tune.with_parameters(trial_driver, context=context, datasets=datasets),
        trial_resources(context))


def _tune_settings() -> None:
    # Tune adds CSV, JSON and (when tensorboardX is installed) TensorBoard loggers unless
    # told not to: keep its result.json per trial, make TensorBoard opt-in.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Tune snapshots the experiment (which trials exist) at most every 10 s by default; a
    # driver killed in between loses the trials started since, and --resume cannot continue
    # them. A snapshot costs milliseconds at our trial counts.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(EXPERIMENT_SNAPSHOT_S))


def _restore(experiment: str, trainable: Any, run: RunDir) -> list[TrialRecord]:
    """Continue an experiment: finished and errored trials stay as they are; unfinished ones
    re-run their trial driver, which resumes from its checkpoint."""
    install_old_module_paths()  # a run started before automl's packages
    with restoring_into(run):  # its callbacks write to the run's current location
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    return _fit(tuner, run)


def _tuner(config: Config, trainable: Any, run: RunDir, name: str, search_alg: Any,
           scheduler: TrialScheduler, num_samples: int, budget: TimeBudget | None,
           param_space: dict[str, Any] | None = None) -> tune.Tuner:
    # A restored experiment brings the callbacks it was started with (Tune pickles them).
    callbacks = [
        ProgressPrinter(config.train.epochs, num_samples if num_samples > 0 else None,
                        run.local / LOG_DIR, budget,
                        frozenset(k for k, v in config.space.items()
                                  if not isinstance(v, BaseDistribution)),
                        config.search.objective),
        HistoryWriter(run, budget),
        JsonLoggerCallback(),
        *tracking_callbacks(config.tracking.mlflow, config.tracking.tensorboard,
                            storage.name(run.location), run),
    ]
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
            trial_dirname_creator=_trial_dirname,
            # Reusing trial actors saves ≈3 s per trial, but in Ray 2.60 a trial queued behind
            # one ASHA stopped never starts ("requires reset_config()"): keep it off.
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=run.location,
            verbose=0,
            callbacks=callbacks,
            stop=budget,
            # Restarts a trial whose process died (its node was lost, it was killed): it
            # resumes from its checkpoint; one that failed by itself re-raises at once.
            failure_config=tune.FailureConfig(max_failures=config.train.max_restarts),
        ),
    )


def _sampler(config: Config) -> optuna.samplers.BaseSampler:
    if config.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=config.search.seed)
    # Optuna's default is 10 random trials before TPE; small searches would never use TPE.
    return optuna.samplers.TPESampler(
        seed=config.search.seed,
        n_startup_trials=min(10, max(2, (config.search.max_trials or 12) // 3)))


def make_scheduler(config: Config) -> TrialScheduler:
    """The search's trial scheduler: ASHA on the search metric per epoch, or FIFO."""
    if config.search.scheduler == "fifo":
        return FIFOScheduler()
    if config.search.rung_tolerance > 0:
        return TolerantASHA(
            tolerance=config.search.rung_tolerance, time_attr="epoch",
            metric=config.search.objective, max_t=config.train.epochs,
            grace_period=config.search.grace_period,
            reduction_factor=config.search.reduction_factor)
    return ASHAScheduler(
        # Our epoch, not Tune's training_iteration: a trial Tune restarts (lost process)
        # resumes mid-run but counts its iterations from 1 again.
        time_attr="epoch", metric=config.search.objective, mode="max",
        max_t=config.train.epochs, grace_period=config.search.grace_period,
        reduction_factor=config.search.reduction_factor)


def _fit(tuner: tune.Tuner, run: RunDir) -> list[TrialRecord]:
    """Run (or continue) the experiment; the records come from the run's history. Tune's own
    Ctrl-C handler stops it gracefully and saves its state; trials it left unfinished have no
    end event and show as `interrupted`."""
    with ray_logs_to(run.local / LOG_DIR / "ray.log"), failures.tune_retries_lost_trials_only():
        tuner.fit()
    return load_records(run.local, run.location)


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)
