"""ASHA that lets the seeded first trials finish.

The first trials are the backbones the transferability ranking cannot tell apart, each
trained with the same seed recipe (`ranking.seed_points`). Ray's ASHA judges a rung from
its very first result (the second trial to reach it is stopped if below the first), so on
one noisy epoch it would pick among backbones the ranking just called tied. Letting those
few trials run to the end gives every tied backbone one full-length comparison; every
later trial is judged against their results as usual.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


class SeededASHA(ASHAScheduler):
    """`ASHAScheduler` that never stops early a trial whose config matches one of `seeds`
    (partial configs); their results still count in every rung."""

    def __init__(self, seeds: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._seeds = [dict(seed) for seed in seeds]

    def is_seed(self, config: dict[str, Any]) -> bool:
        """True when `config` is one of the seed points (every key of a seed, same value)."""
        return any(all(config.get(k) == v for k, v in seed.items()) for seed in self._seeds)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        early = result.get(self._time_attr, self._max_t) < self._max_t
        if action == TrialScheduler.STOP and early and self.is_seed(trial.config):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action
