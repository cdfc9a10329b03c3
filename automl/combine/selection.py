"""Which trials to combine, decided on validation predictions only (issue 29).

- `ensemble_selection`: Caruana et al. (ICML 2004) forward selection with replacement over
  the trials' validation probabilities, as auto-sklearn and AutoGluon ship it: start empty,
  add the member whose inclusion scores best, up to `max_size`; keep the best prefix.
- `greedy_soup`: Wortsman et al. (ICML 2022): candidates in order of validation score, each
  kept only when the averaged model's validation score does not drop. The caller evaluates
  a soup (a forward pass of averaged weights); this module only decides.
- `split_halves`, `cross_fit`: the two halves of a validation split (stratified, seeded);
  each way of choosing (best single trial, soup, ensemble) is scored on each half by the
  choice it makes on the other — or the ensemble would win selection by its own optimism.

Nothing here receives test labels; every function takes validation arrays only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.trial.classification import metric_value


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits (N × K), computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def confusion_of(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row = true class, column = the most probable class."""
    classes = probabilities.shape[1]
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    return confusion


def score_probabilities(probabilities: np.ndarray, labels: np.ndarray, metric: str
                        ) -> tuple[float, float]:
    """(metric, −NLL) of averaged probabilities: the second breaks ties in the first,
    which are common when a member changes few argmaxes."""
    confusion = confusion_of(probabilities, labels)
    picked = probabilities[np.arange(len(labels)), labels]
    nll = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    return metric_value(confusion, metric), -nll


@dataclass(frozen=True)
class EnsembleChoice:
    """Forward selection's result: each member's weight (its count ÷ the ensemble's size)
    and the validation score of the kept prefix."""

    weights: dict[str, float]
    score: float
    steps: int


def ensemble_selection(probabilities: dict[str, np.ndarray], labels: np.ndarray,
                       metric: str = "accuracy", max_size: int = 20,
                       allowed: Callable[[dict[str, int]], bool] | None = None
                       ) -> EnsembleChoice:
    """Forward selection with replacement (Caruana 2004) over validation `probabilities`
    (trial id → N × K). `allowed(counts)` may veto a step (a latency cap); the best prefix
    over the `max_size` steps is returned."""
    if not probabilities:
        raise ValueError("ensemble_selection needs at least one member")
    names = sorted(probabilities)
    total = np.zeros_like(next(iter(probabilities.values())), dtype=np.float64)
    counts: dict[str, int] = {}
    best: tuple[tuple[float, float], dict[str, int]] | None = None
    for step in range(1, max_size + 1):
        options = []
        for name in names:
            trial = {**counts, name: counts.get(name, 0) + 1}
            if allowed is not None and not allowed(trial):
                continue
            mean = (total + probabilities[name]) / step
            options.append((score_probabilities(mean, labels, metric), name))
        if not options:
            break
        scored, name = max(options, key=lambda o: o[0])
        counts[name] = counts.get(name, 0) + 1
        total += probabilities[name]
        if best is None or scored > best[0]:
            best = (scored, dict(counts))
    if best is None:
        raise ValueError("no member fits the ensemble's constraints")
    size = sum(best[1].values())
    return EnsembleChoice({n: c / size for n, c in best[1].items()}, best[0][0], size)


def greedy_soup(ranked: Sequence[str], evaluate: Callable[[list[str]], float]
                ) -> tuple[list[str], float]:
    """Greedy soup: `ranked` trial ids (best validation score first); `evaluate(members)`
    scores the averaged model on validation. A candidate stays only when the score does
    not drop. Returns the members and their soup's score."""
    if not ranked:
        raise ValueError("greedy_soup needs at least one candidate")
    members = [ranked[0]]
    best = evaluate(members)
    for candidate in ranked[1:]:
        score = evaluate([*members, candidate])
        if score >= best:
            members.append(candidate)
            best = score
    return members, best


def split_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves of a validation split, each class split evenly (seeded): the
    first fits an ensemble's weights, the second scores every selection candidate."""
    rng = np.random.default_rng(seed)
    first: list[int] = []
    second: list[int] = []
    for label in np.unique(labels):
        where = rng.permutation(np.flatnonzero(labels == label))
        half = len(where) // 2
        # An odd class gives its extra example to alternating halves, keeping them level.
        if len(where) % 2 and len(first) > len(second):
            half += 1
        second.extend(where[:half].tolist())
        first.extend(where[half:].tolist())
    return np.sort(np.array(first, dtype=np.int64)), np.sort(np.array(second, dtype=np.int64))


Procedure = Callable[[np.ndarray], tuple[Any, np.ndarray]]
"""A way to choose on some validation rows: those rows' indices → (what it chose, the
chosen model's probabilities on every validation row)."""


def cross_fit(procedure: Procedure, halves: tuple[np.ndarray, np.ndarray]
              ) -> tuple[Any, np.ndarray, np.ndarray]:
    """What `procedure` chooses on all rows, its probabilities, and the out-of-fold
    probabilities: each half's rows as the choice made on the other half predicts them —
    an honest estimate, on every row, of choosing this way."""
    everything = np.sort(np.concatenate(halves))
    out_of_fold: np.ndarray | None = None
    for held, rest in (halves, halves[::-1]):
        predicted = procedure(rest)[1]
        if out_of_fold is None:
            out_of_fold = np.zeros_like(predicted)
        out_of_fold[held] = predicted[held]
    chosen, probabilities = procedure(everything)
    assert out_of_fold is not None
    return chosen, probabilities, out_of_fold
