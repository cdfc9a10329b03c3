"""How many trials run at once: fixed on the embedded Ray, following the cluster when it grows."""

from __future__ import annotations

from typing import Any

import pytest
from ray.tune.search import Searcher

from automl.config.schema import ResourcesConfig
from automl.errors import AutomlError
from automl.search import tune as search
from automl.search.tune import ClusterSizedLimiter, plan_concurrency


def test_concurrency_from_cluster_resources() -> None:
    from automl.config.schema import ResourcesConfig
    from automl.search.tune import plan_concurrency

    cluster = {"CPU": 2.0}
    assert plan_concurrency(ResourcesConfig(1, 1.0), cluster) == 2
    assert plan_concurrency(ResourcesConfig(2, 1.0), cluster) == 1
    assert plan_concurrency(ResourcesConfig(1, 1.0, max_concurrent_trials=1), cluster) == 1
    with pytest.raises(AutomlError, match=r"2 × 2 = 4 CPUs, but the cluster has 2"):
        plan_concurrency(ResourcesConfig(2, 2.0), cluster)
    with pytest.raises(AutomlError, match="use_gpu"):
        plan_concurrency(ResourcesConfig(1, 1.0, use_gpu=True), cluster)
    assert plan_concurrency(ResourcesConfig(2, 4.0, use_gpu=True), {"CPU": 32, "GPU": 4}) == 2


def test_an_autoscaling_cluster_without_gpus_yet_waits_instead_of_failing() -> None:
    gpu = ResourcesConfig(2, 1.0, use_gpu=True)
    assert plan_concurrency(gpu, {"CPU": 4.0, "GPU": 0.0}, can_grow=True) == 1
    assert plan_concurrency(ResourcesConfig(4, 1.0), {"CPU": 2.0}, can_grow=True) == 1


class _Counter(Searcher):
    def __init__(self) -> None:
        super().__init__(metric="val_accuracy", mode="max")
        self.count = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self.count += 1
        return {"x": self.count}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        pass


def test_concurrency_grows_as_nodes_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two-GPU trials on a cluster that starts with none: one waits; as GPU nodes join the
    limit follows (and never exceeds max_concurrent_trials)."""
    cluster = {"CPU": 4.0, "GPU": 0.0}
    monkeypatch.setattr(search.ray, "cluster_resources", lambda: dict(cluster))
    monkeypatch.setattr(search, "LIMIT_REFRESH_S", -1.0)  # re-read on every suggestion
    limiter = ClusterSizedLimiter(_Counter(), ResourcesConfig(2, 1.0, use_gpu=True,
                                                              max_concurrent_trials=3), start=1)
    assert limiter.suggest("a") == {"x": 1}
    assert limiter.suggest("b") is None  # one trial in flight, none fits yet
    cluster.update(CPU=20.0, GPU=4.0)  # two 2-GPU nodes joined
    assert limiter.suggest("b") == {"x": 2}
    assert limiter.suggest("c") is None  # 4 GPUs hold 2 trials
    cluster.update(CPU=40.0, GPU=16.0)
    assert limiter.suggest("c") == {"x": 3}
    assert limiter.suggest("d") is None  # capped by max_concurrent_trials
    limiter.on_trial_complete("a", {"val_accuracy": 0.5})
    assert limiter.suggest("d") == {"x": 4}


def test_own_errors_are_not_retried_lost_workers_are() -> None:
    """A NaN loss fails the same way on every attempt: raise at once. A killed worker or
    lost node: restart the group (Ray's policy, up to max_failures)."""
    import ray.train
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    from ray.train.v2._internal.execution.failure_handling import FailureDecision
    from ray.train.v2.api import data_parallel_trainer
    from ray.train.v2.api.exceptions import WorkerGroupError

    from automl.errors import TrialFailed
    from automl.trial import failures

    original = data_parallel_trainer.create_failure_policy
    try:
        assert failures.install()
        config = ray.train.FailureConfig(max_failures=5)
        policy = data_parallel_trainer.create_failure_policy(config)
        nan = WorkerGroupError("nan", {0: UserExceptionWithTraceback(
            TrialFailed("training loss became nan"), "Traceback ...")})
        died = WorkerGroupError("died", {1: ActorDiedError()})
        overflow = WorkerGroupError("lr", {0: UserExceptionWithTraceback(
            RuntimeError("value cannot be converted to type float"), "Traceback ...")})
        # A lost DDP peer: the survivor's collective fails with a RuntimeError, the lost
        # rank with Ray's error; a storage hiccup is an OSError.
        peer = WorkerGroupError("peer", {0: RuntimeError("gloo: connection closed"),
                                         1: ActorDiedError()})
        storage = WorkerGroupError("s3", {0: OSError("When uploading: timed out")})
        assert policy.make_decision(nan) == FailureDecision.RAISE
        assert policy.make_decision(overflow) == FailureDecision.RAISE
        assert policy.make_decision(died) == FailureDecision.RETRY
        assert policy.make_decision(peer) == FailureDecision.RETRY
        assert policy.make_decision(storage) == FailureDecision.RETRY
    finally:
        data_parallel_trainer.create_failure_policy = original


def test_sampler_and_scheduler_are_chosen_by_the_config() -> None:
    """`search.sampler: random` + `search.scheduler: fifo` is a plain random search (the
    benchmark's baseline); the default is TPE + ASHA counting our epochs."""
    import dataclasses

    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from automl.config.schema import Config, SearchConfig

    default = Config(task="image", backbones=(), space={})
    assert isinstance(search._sampler(default), optuna.samplers.TPESampler)
    asha = search.make_scheduler(default)
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == "epoch"
    plain = dataclasses.replace(default, search=SearchConfig(sampler="random", scheduler="fifo"))
    assert isinstance(search._sampler(plain), optuna.samplers.RandomSampler)
    assert isinstance(search.make_scheduler(plain), FIFOScheduler)
