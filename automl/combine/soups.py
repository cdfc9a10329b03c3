"""Greedy soups over a finished search's trials (issue 29): trials grouped by what
averaging needs in common (`soup.soup_group`), each group's candidates added best first and
kept only when validation does not drop; every candidate soup is evaluated in a Ray
task (`evaluate.soup_predictions`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from automl import storage
from automl.combine.result import COMBINED_DIR
from automl.combine.selection import greedy_soup, softmax
from automl.combine.soup import soup_group
from automl.combine.sources import folders, in_order, remote
from automl.trial.plan import TrialPlan

Soup = tuple[str, dict[str, float], np.ndarray, np.ndarray, str, float]
"""(name, members → weight, validation probabilities, out-of-fold probabilities,
checkpoint, seconds to build)."""


class _Group:
    """One group's soups, each evaluated once (a Ray task) and remembered."""

    def __init__(self, task: Any, location: dict[str, str], probs: dict[str, np.ndarray],
                 keys: tuple[str, ...], val: str, train: str) -> None:
        self.task, self.location, self.probs, self.keys = task, location, probs, keys
        self.val, self.train = val, train
        self.tried: dict[tuple[str, ...], np.ndarray] = {}

    def scorer(self, on: Callable[[np.ndarray, np.ndarray], float], half: np.ndarray
               ) -> Callable[[list[str]], float]:
        """`greedy_soup`'s evaluate: a soup's score on `half` of validation."""
        return lambda members: on(half, self.probabilities(members))

    def greedy(self, ids: list[str], on: Callable[[np.ndarray, np.ndarray], float],
               part: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The greedy soup of `ids` chosen on the validation rows `part` (members best
        first), and its probabilities on every row."""
        ranked = sorted(ids, key=lambda t: on(part, self.probs[t]), reverse=True)
        members, _ = greedy_soup(ranked, self.scorer(on, part))
        return members, self.probabilities(members)

    def probabilities(self, members: list[str], save_to: str | None = None) -> np.ndarray:
        """Validation probabilities of the uniform soup of `members` (a single trial's own);
        `save_to` writes the soup there as a checkpoint."""
        import ray

        if len(members) == 1:
            return self.probs[members[0]]
        if save_to is None and tuple(members) in self.tried:
            return self.tried[tuple(members)]
        found = ray.get(self.task.remote([self.location[t] for t in members], self.val,
                                         self.train, save_to, {"soup_members": members}))
        self.tried[tuple(members)] = softmax(in_order(found, self.keys))
        return self.tried[tuple(members)]


def build_soups(rows: list[dict[str, Any]], probs: dict[str, np.ndarray],
                keys: tuple[str, ...], on: Callable[[np.ndarray, np.ndarray], float],
                crossfit: Callable[..., tuple[Any, np.ndarray, np.ndarray]], data_root: str,
                run_location: str, use_gpu: bool, log: Callable[[str], Any]) -> list[Soup]:
    """The greedy soup of each group of ≥ 2 averageable trials, chosen on all validation
    rows and cross-fitted (`combine_rows`): (name, members, validation probabilities,
    out-of-fold probabilities, checkpoint, seconds). Each candidate soup is a Ray task."""
    from automl.combine.evaluate import soup_predictions

    task = remote(soup_predictions, use_gpu)
    location = {str(r["trial_id"]): str(r["checkpoint"]) for r in rows}
    groups: dict[Any, list[str]] = {}
    for trial_id in probs:
        key = soup_group(TrialPlan.read(location[trial_id]))
        if key is not None:
            groups.setdefault(key, []).append(trial_id)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = []
    for number, ids in enumerate(g for g in groups.values() if len(g) > 1):
        started = time.time()
        val, train = folders(location[ids[0]], data_root, "val", "train")
        group = _Group(task, location, probs, keys, val, train)

        members, _, out_of_fold = crossfit(functools.partial(group.greedy, ids, on))
        if len(members) < 2:
            log(f"soup of {len(ids)} trials ({members[0]}, …): no member kept beside the "
                "best (each lowered validation accuracy)")
            continue
        target = storage.join(run_location, COMBINED_DIR, f"soup-{number}-{stamp}")
        kept = group.probabilities(members, save_to=target)  # written as a checkpoint
        log(f"soup {number}: {len(members)} of {len(ids)} averageable trials "
            f"({', '.join(members)})")
        out.append((f"soup {number}", {t: 1 / len(members) for t in members},
                    kept, out_of_fold, target, time.time() - started))
    if not groups or all(len(g) < 2 for g in groups.values()):
        log("soup: no two trials share backbone, weights, seed and preprocessing "
            "(averaging needs a common starting point)")
    return out
