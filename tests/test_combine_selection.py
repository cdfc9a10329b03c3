"""Soup and ensemble selection on hand-made validation predictions (no Ray, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from automl.combine.selection import (
    cross_fit,
    ensemble_selection,
    greedy_soup,
    softmax,
    split_halves,
)


def one_hot(predicted: list[int], classes: int = 3, confidence: float = 0.8) -> np.ndarray:
    """Probabilities that put `confidence` on each predicted class."""
    rest = (1 - confidence) / (classes - 1)
    out = np.full((len(predicted), classes), rest)
    out[np.arange(len(predicted)), predicted] = confidence
    return out


def sure_or_unsure(labels: np.ndarray, right: list[bool], classes: int = 3) -> np.ndarray:
    """0.9 on the true class where `right`; elsewhere a weak wrong guess (0.4 on the next
    class, 0.35 on the true one)."""
    out = np.zeros((len(labels), classes))
    for i, (label, ok) in enumerate(zip(labels, right, strict=True)):
        if ok:
            out[i] = 0.1 / (classes - 1)
            out[i, label] = 0.9
        else:
            out[i] = 0.25 / (classes - 2)
            out[i, label], out[i, (label + 1) % classes] = 0.35, 0.4
    return out


def test_ensemble_selection_finds_the_known_best_combination() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    # a and b are each right on 4 of 6, wrong (weakly) on disjoint examples: their average
    # is right everywhere. c is confidently wrong everywhere.
    a = sure_or_unsure(labels, [True, True, True, True, False, False])
    b = sure_or_unsure(labels, [False, False, True, True, True, True])
    c = one_hot([1, 2, 0, 1, 2, 0], confidence=0.99)
    choice = ensemble_selection({"a": a, "b": b, "c": c}, labels, max_size=6)
    assert choice.score == 1.0
    assert choice.weights == {"a": 0.5, "b": 0.5}
    assert choice.steps == 2


def test_ensemble_selection_keeps_a_single_member_when_nothing_helps() -> None:
    labels = np.array([0, 1, 2, 0])
    best = one_hot([0, 1, 2, 0])
    worse = one_hot([1, 1, 2, 2])
    choice = ensemble_selection({"best": best, "worse": worse}, labels, max_size=5)
    assert choice.weights == {"best": 1.0}
    assert choice.score == 1.0


def test_ensemble_selection_respects_a_veto() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    a = one_hot([0, 1, 2, 0, 0, 0], confidence=0.9)
    b = one_hot([1, 2, 2, 0, 1, 2], confidence=0.6)
    choice = ensemble_selection({"a": a, "b": b}, labels, max_size=6,
                                allowed=lambda counts: len(counts) == 1)
    assert len(choice.weights) == 1
    with pytest.raises(ValueError, match="constraints"):
        ensemble_selection({"a": a}, labels, allowed=lambda counts: False)


def test_greedy_soup_adds_a_member_only_when_validation_does_not_drop() -> None:
    scores = {("t1",): 0.80, ("t1", "t2"): 0.82, ("t1", "t2", "t3"): 0.79,
              ("t1", "t2", "t4"): 0.82}
    seen: list[tuple[str, ...]] = []

    def evaluate(members: list[str]) -> float:
        seen.append(tuple(members))
        return scores[tuple(members)]

    members, score = greedy_soup(["t1", "t2", "t3", "t4"], evaluate)
    assert members == ["t1", "t2", "t4"]  # t3 dropped it; t4 kept it level
    assert score == 0.82
    assert seen == [("t1",), ("t1", "t2"), ("t1", "t2", "t3"), ("t1", "t2", "t4")]


def test_split_halves_are_disjoint_stratified_and_seeded() -> None:
    labels = np.array([0] * 7 + [1] * 5 + [2] * 4)
    first, second = split_halves(labels, seed=3)
    assert not set(first) & set(second)
    assert sorted([*first, *second]) == list(range(len(labels)))
    assert abs(len(first) - len(second)) <= 1
    for label in (0, 1, 2):
        assert abs((labels[first] == label).sum() - (labels[second] == label).sum()) <= 1
    again = split_halves(labels, seed=3)
    assert (again[0] == first).all() and (again[1] == second).all()


def test_cross_fitting_scores_each_half_by_the_choice_made_on_the_other() -> None:
    """Two trials that are right on one half only beat a steady one wherever they were
    chosen; cross-fitting shows that picking the best trial this way gets every row wrong,
    while the choice on all rows (shown in-sample) is the steady trial."""
    labels = np.array([0, 1] * 20)
    first, second = split_halves(labels)
    wrong = 1 - labels
    lucky_a, lucky_b = wrong.copy(), wrong.copy()
    lucky_a[first], lucky_b[second] = labels[first], labels[second]
    steady = labels.copy()
    steady[::3] = wrong[::3]  # right on 2 rows of 3 everywhere
    probs = {name: one_hot(list(p), classes=2)
             for name, p in (("a", lucky_a), ("b", lucky_b), ("steady", steady))}

    def best(rows: np.ndarray) -> tuple[str, np.ndarray]:
        name = max(probs, key=lambda t: (probs[t][rows].argmax(1) == labels[rows]).mean())
        return name, probs[name]

    chosen, in_sample, out_of_fold = cross_fit(best, (first, second))
    assert chosen == "steady" and np.array_equal(in_sample, probs["steady"])
    assert np.array_equal(out_of_fold[second], probs["a"][second])  # chosen on half A
    assert np.array_equal(out_of_fold[first], probs["b"][first])
    assert (out_of_fold.argmax(1) == labels).mean() == 0.0


def test_softmax_is_stable_for_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] == pytest.approx(1.0)


def test_only_eligible_trials_take_part_and_the_ensemble_keeps_the_limits() -> None:
    import pandas as pd

    from automl.combine.sources import usable_rows, within_limits

    board = pd.DataFrame([
        {"trial_id": "a", "checkpoint": "/a", "eligible": True, "latency_ms": 5.0,
         "total_params": 1e6},
        {"trial_id": "b", "checkpoint": "/b", "eligible": True, "latency_ms": 7.0,
         "total_params": 2e6},
        {"trial_id": "c", "checkpoint": "/c", "eligible": False, "latency_ms": 50.0,
         "total_params": 9e6},
        {"trial_id": "d", "checkpoint": float("nan"), "eligible": True, "latency_ms": 1.0,
         "total_params": 1e5},
        {"trial_id": "e", "checkpoint": "/e", "eligible": True, "latency_ms": float("nan"),
         "total_params": 1e6},
    ])
    rows = {r["trial_id"]: r for r in usable_rows(board)}
    assert list(rows) == ["a", "b", "e"]
    assert within_limits(rows, None, None) is None
    allowed = within_limits(rows, 12.0, 2.5e6)
    assert allowed is not None
    assert allowed({"a": 2}) and allowed({"a": 1, "b": 1}) is False  # 3e6 parameters
    assert within_limits(rows, 12.0, None)({"a": 1, "b": 1})  # type: ignore[misc]
    assert not within_limits(rows, 13.0, None)({"a": 1, "e": 1})  # type: ignore[misc]
