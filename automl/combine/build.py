"""Soups and an ensemble built from a finished search (issue 29): every decision on half A
of the validation split, every candidate — the selected single trial too — compared on
half B, and only then the test split scored for the candidates, which nothing that chose
them receives.
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
    confusion_of,
    ensemble_selection,
    score_probabilities,
    softmax,
    split_halves,
)
from automl.combine.soups import build_soups
from automl.combine.sources import number, validation_predictions
from automl.trial.classification import metric_se, metric_value

if TYPE_CHECKING:
    import pandas as pd


def combine_rows(board: pd.DataFrame, selected: str, data_root: str, run_location: str,
                 metric: str, kinds: tuple[str, ...] = KINDS, max_size: int = 20,
                 max_latency_ms: float | None = None, use_gpu: bool = False,
                 log: Callable[[str], Any] = print) -> Combination:
    """Build the greedy soup of each compatible group and the ensemble over the board's
    trials with checkpoints (Ray must be up); score each and the `selected` trial on the
    validation half B, choose, then score the candidates on the test split when the run has
    one."""
    rows = [r for r in board.to_dict("records") if isinstance(r.get("checkpoint"), str)]
    found = validation_predictions(rows, data_root, run_location, use_gpu, log)
    keys, labels, logits = stored.align(found)
    fit, select = split_halves(labels)
    probs = {t: softmax(v) for t, v in logits.items()}
    by_id = {str(r["trial_id"]): r for r in rows}

    def on(half: np.ndarray, p: np.ndarray) -> float:
        return score_probabilities(p[half], labels[half], metric)[0]

    def candidate(kind: str, name: str, members: dict[str, float], p: np.ndarray,
                  **extra: Any) -> Candidate:
        confusion = confusion_of(p[select], labels[select])
        return Candidate(kind, name, members, on(fit, p), metric_value(confusion, metric),
                         metric_se(confusion, metric), **extra)

    def trial(kind: str, trial_id: str, name: str) -> Candidate:
        row = by_id[trial_id]
        return candidate(kind, name, {trial_id: 1.0}, probs[trial_id],
                         latency_ms=number(row.get("latency_ms")),
                         total_params=number(row.get("total_params")),
                         checkpoint=str(row["checkpoint"]))

    # The search selected its trial on all of validation, so half B flatters it; the single
    # trial that competes is the one half A selects, as the soups and the ensemble are.
    by_half = max(probs, key=lambda t: on(fit, probs[t]))
    out = [trial("single" if by_half == selected else "selected", selected,
                 f"trial {selected} (selected)")]
    if by_half != selected:
        out.append(trial("single", by_half, f"trial {by_half} (half A)"))
    if "ensemble" in kinds:
        started = time.time()
        latency = {t: number(by_id[t].get("latency_ms")) for t in probs}
        allowed = None if max_latency_ms is None else (
            lambda counts: sum(latency[t] or 0.0 for t in counts) <= max_latency_ms)
        choice = ensemble_selection({t: p[fit] for t, p in probs.items()}, labels[fit],
                                    metric, max_size, allowed)
        mean = sum(w * probs[t] for t, w in choice.weights.items())
        out.append(candidate(
            "ensemble", "ensemble", choice.weights, np.asarray(mean),
            latency_ms=sum(latency[t] or 0.0 for t in choice.weights),
            total_params=sum(number(by_id[t].get("total_params")) or 0.0
                             for t in choice.weights),
            seconds=time.time() - started))
        log(f"ensemble: {len(choice.weights)} distinct member(s) of {len(probs)} trials, "
            f"{choice.steps} selection step(s)")
    if "soup" in kinds:
        soups = build_soups(rows, probs, keys, on, fit, data_root, run_location, use_gpu,
                            log)
        out.extend(candidate("soup", name, members, p, checkpoint=location,
                             latency_ms=number(by_id[next(iter(members))].get("latency_ms")),
                             total_params=number(by_id[next(iter(members))].get("total_params")),
                             seconds=seconds)
                   for name, members, p, location, seconds in soups)
    # Ties go to the single trial: as good on half B and no extra cost.
    chosen = max((c for c in out if c.kind != "selected"),
                 key=lambda c: (c.val, c.kind == "single")).name
    result = Combination(out, chosen, metric, len(fit), len(select))
    # Selection is over: only now is the test split read, for these candidates alone.
    return score_on_test(result, {t: str(r["checkpoint"]) for t, r in by_id.items()},
                         data_root, use_gpu, log)
