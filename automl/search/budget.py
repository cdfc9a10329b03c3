"""Time budgets: `search.time_budget: 30m` as the search's stopping rule.

Trials learn the search's deadline and end themselves after the last epoch that fits in it
(their final result carries `out_of_time`; the board marks them so): every epoch they
completed is reported and checkpointed. `TimeBudget`, a Ray Tune `Stopper`, is the safety net
for a trial whose single epoch outlasts the budget: `grace` seconds after it is spent, Tune
stops whatever still runs. Like Tune's own `TimeoutStopper`, it counts the time it has
watched, so a resumed search (`--resume`) gets only what was left.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune.stopper import Stopper


class TimeBudget(Stopper):
    """Stops the whole experiment `grace` seconds after `seconds` have passed (minus `spent`
    before Tune started, e.g. data preparation). Tune polls `stop_all` every loop step."""

    def __init__(self, seconds: float, spent: float = 0.0) -> None:
        self.seconds = seconds
        self.left_s = seconds - spent
        self.grace = min(60.0, max(10.0, 0.05 * seconds))
        self._last: float | None = time.monotonic()
        self.sampling_stopped = False
        """Set when the search sampled no more trials because too little time was left."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        self._tick()
        return self.left_s <= -self.grace

    def _tick(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.left_s -= now - self._last
        self._last = now

    def left(self) -> float:
        """Seconds still to spend (negative once spent)."""
        self._tick()
        return self.left_s

    def deadline(self) -> float:
        """The wall-clock time (`time.time()`) at which the budget is spent, for the trials."""
        return time.time() + self.left()

    def ended_search(self) -> bool:
        """True when the budget is what ended the search: spent, or too short for another
        trial's first result."""
        return self.sampling_stopped or self.expired

    @property
    def expired(self) -> bool:
        """True once the budget is spent."""
        return self.left() <= 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A restored search counts from its restart, not across the time the driver was down.
        self.__dict__.update(state)
        self._last = None
