"""ASHA whose rung decisions treat differences within noise as ties (`search.rung_tolerance`).

Tune's ASHA stops a trial whose score at a rung is below the rung's cutoff (the
1 − 1/reduction_factor quantile of the scores recorded there). On a validation split of n
examples an accuracy p has a binomial standard error √(p(1 − p)/n): 1.7 points on 400
images. `TolerantASHA` lets a trial go on when it is within `tolerance` standard errors of
the cutoff; Tune's own bookkeeping (rungs, cutoffs, recorded scores) is unchanged, this class
only overrides a STOP it would have made.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

EXAMPLES_KEY = "val_examples"
"""The result key holding the validation split's size (the standard error's n)."""


class TolerantASHA(ASHAScheduler):
    """Tune's ASHA (one bracket), except that a trial within `tolerance` binomial standard
    errors of a rung's cutoff continues."""

    def __init__(self, *, tolerance: float, time_attr: str, metric: str, max_t: int,
                 grace_period: int, reduction_factor: float) -> None:
        super().__init__(time_attr=time_attr, metric=metric, mode="max", max_t=max_t,
                         grace_period=grace_period, reduction_factor=reduction_factor)
        self.tolerance = tolerance
        self.reduction_factor = reduction_factor
        rungs = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1 + 1e-9)
        self.milestones = [grace_period * reduction_factor ** k for k in range(rungs)]
        self.scores: dict[float, dict[str, float]] = {m: {} for m in self.milestones}

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]
                        ) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        value, at = result.get(self.metric), result.get(self._time_attr)
        if value is None or at is None or at >= self._max_t:
            return action
        rung = next((m for m in reversed(self.milestones) if at >= m), None)
        if rung is None or trial.trial_id in self.scores[rung]:
            return action
        recorded = self.scores[rung]
        cutoff = (np.nanpercentile(list(recorded.values()), (1 - 1 / self.reduction_factor)
                                   * 100) if recorded else None)
        recorded[trial.trial_id] = float(value)
        if action != TrialScheduler.STOP or cutoff is None:
            return action
        examples = result.get(EXAMPLES_KEY)
        if not examples:
            return action
        p = min(max(float(cutoff), 0.0), 1.0)
        if float(value) >= cutoff - self.tolerance * math.sqrt(p * (1 - p) / float(examples)):
            self._num_stopped -= 1  # Tune counted the stop it no longer is
            return TrialScheduler.CONTINUE
        return action
