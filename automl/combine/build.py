"""Soups and an ensemble built from a finished search (issue 29). Each kind of candidate —
the best single trial, each group's greedy soup, the ensemble — is chosen on all of the
validation split, and its chance to compete is an honest estimate of choosing that way:
cross-fitting over the split's two halves (choose on one half, predict the other, both
ways), so every validation row is scored by a choice that never saw it. Only then is the
test split scored for the candidates; nothing that chose them receives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.combine import predictions as stored
from automl.combine.on_test import score_on_test
from automl.combine.result import KINDS, Candidate, Combination
from automl.combine.selection import (
    Procedure,
    confusion_of,
    cross_fit,
    ensemble_selection,
    score_probabilities,
    softmax,
    split_halves,
)
from automl.combine.soups import build_soups
from automl.combine.sources import number, usable_rows, validation_predictions, within_limits
from automl.errors import AutomlError
from automl.trial.classification import metric_se, metric_value

if TYPE_CHECKING:
    import pandas as pd


def combine_rows(board: pd.DataFrame, selected: str, data_root: str, run_location: str,
                 metric: str, kinds: tuple[str, ...] = KINDS, max_size: int = 20,
                 max_latency_ms: float | None = None, use_gpu: bool = False,
                 log: Callable[[str], Any] = print, max_params: float | None = None
                 ) -> Combination:
    """Build the greedy soup of each compatible group and the ensemble over the board's
    trials with checkpoints (Ray must be up), each chosen on all of validation; score each
    kind — the single best trial too — by cross-fitting (every validation row predicted by
    the choice made on the other half), choose, then score the candidates on the test split
    when the run has one. Only eligible trials take part; the ensemble's summed latency and
    parameters stay within `max_latency_ms` / `max_params`."""
    rows = usable_rows(board)
    if not rows:
        raise AutomlError("combine: no trial with a checkpoint meets the limits "
                          "(--max-params / --max-latency-ms); relax them")
    found = validation_predictions(rows, data_root, run_location, use_gpu, log)
    keys, labels, logits = stored.align(found)
    halves = split_halves(labels)
    everything = np.arange(len(labels))
    probs = {t: softmax(v) for t, v in logits.items()}
    by_id = {str(r["trial_id"]): r for r in rows}

    def on(part: np.ndarray, p: np.ndarray) -> float:
        return score_probabilities(p[part], labels[part], metric)[0]

    def crossfit(procedure: Procedure) -> tuple[Any, np.ndarray, np.ndarray]:
        return cross_fit(procedure, halves)

    def candidate(kind: str, name: str, members: dict[str, float], p: np.ndarray,
                  out_of_fold: np.ndarray, **extra: Any) -> Candidate:
        confusion = confusion_of(out_of_fold, labels)
        return Candidate(kind, name, members, on(everything, p), metric_value(confusion, metric),
                         metric_se(confusion, metric), **extra)

    def trial(kind: str, trial_id: str, name: str, out_of_fold: np.ndarray) -> Candidate:
        row = by_id[trial_id]
        return candidate(kind, name, {trial_id: 1.0}, probs[trial_id], out_of_fold,
                         latency_ms=number(row.get("latency_ms")),
                         total_params=number(row.get("total_params")),
                         checkpoint=str(row["checkpoint"]))

    def best_single(part: np.ndarray) -> tuple[str, np.ndarray]:
        best = max(probs, key=lambda t: on(part, probs[t]))
        return best, probs[best]

    best, _, single_oof = crossfit(best_single)
    out = [trial("single", best, f"trial {best}" + (" (selected)" if best == selected else ""),
                 single_oof)]
    if best != selected and selected in probs:
        # The search's pick by its own rules (constraints, ties): the test gains' reference.
        out.insert(0, trial("selected", selected, f"trial {selected} (selected)",
                            probs[selected]))
    if "ensemble" in kinds:
        started = time.time()
        latency = {t: number(by_id[t].get("latency_ms")) for t in probs}
        allowed = within_limits(by_id, max_latency_ms, max_params)

        def ensemble(part: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
            choice = ensemble_selection({t: p[part] for t, p in probs.items()}, labels[part],
                                        metric, max_size, allowed)
            return choice.weights, np.asarray(sum(w * probs[t]
                                                  for t, w in choice.weights.items()))

        weights, mean, ensemble_oof = crossfit(ensemble)
        out.append(candidate(
            "ensemble", "ensemble", weights, mean, ensemble_oof,
            latency_ms=sum(latency[t] or 0.0 for t in weights),
            total_params=sum(number(by_id[t].get("total_params")) or 0.0 for t in weights),
            seconds=time.time() - started))
        log(f"ensemble: {len(weights)} distinct member(s) of {len(probs)} trials")
    if "soup" in kinds:
        soups = build_soups(rows, probs, keys, on, crossfit, data_root, run_location,
                            use_gpu, log)
        out.extend(candidate("soup", name, members, p, soup_oof, checkpoint=location,
                             latency_ms=number(by_id[next(iter(members))].get("latency_ms")),
                             total_params=number(by_id[next(iter(members))].get("total_params")),
                             seconds=seconds)
                   for name, members, p, soup_oof, location, seconds in soups)
    # Ties go to the single trial: as good, and no extra cost.
    chosen = max((c for c in out if c.kind != "selected"),
                 key=lambda c: (c.val, c.kind == "single")).name
    result = Combination(out, chosen, metric, len(labels), len(labels), folds=len(halves))
    # Selection is over: only now is the test split read, for these candidates alone.
    return score_on_test(result, {t: str(r["checkpoint"]) for t, r in by_id.items()},
                         data_root, use_gpu, log)
