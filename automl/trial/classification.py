"""Classification scores from a confusion matrix: accuracy, balanced accuracy, macro F1 and
their standard errors.

Every evaluation (a trial's epoch, a probe, scoring a checkpoint) counts into one flat
float64 tensor — loss sum, example count, then the K × K confusion matrix (row: true class,
column: predicted) — so DDP ranks sum their counts with one all-reduce and every metric is
exact over the whole split, whichever way the examples were spread over the ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from automl.config.schema import METRICS

if TYPE_CHECKING:  # torch loads where counting happens, not where scores are only read
    import torch

BOOTSTRAP_RESAMPLES = 200


def new_counts(num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Zeroed counts: [loss sum, examples, K × K confusion (flattened)]."""
    import torch

    return torch.zeros(2 + num_classes * num_classes, dtype=torch.float64, device=device)


def count_batch(counts: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Add one batch's loss, size and (true, predicted) pairs to `counts`, in place."""
    import torch
    import torch.nn.functional as F

    k = logits.shape[1]
    counts[0] += F.cross_entropy(logits, labels, reduction="sum")
    counts[1] += len(labels)
    pairs = labels.long() * k + logits.argmax(1)
    # index_add_ rather than bincount: the same on every device (meta included, which the
    # tests use to prove the counts never leave the worker's device); sums of ones are exact.
    counts[2:].index_add_(0, pairs, torch.ones_like(pairs, dtype=counts.dtype))


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation counted (all ranks' counts summed)."""

    loss_sum: float
    examples: int
    confusion: np.ndarray
    """int64 K × K: row = true class, column = predicted class."""

    @classmethod
    def from_counts(cls, values: list[float] | np.ndarray, num_classes: int) -> Evaluation:
        """Read the counts `count_batch` filled (after the all-reduce)."""
        values = np.asarray(values, dtype=np.float64)
        confusion = np.rint(values[2:2 + num_classes ** 2]).astype(np.int64)
        return cls(float(values[0]), int(np.rint(values[1])),
                   confusion.reshape(num_classes, num_classes))

    @property
    def loss(self) -> float:
        """Mean cross-entropy."""
        return self.loss_sum / max(self.examples, 1)

    def score(self, metric: str) -> float:
        """`metric` (one of METRICS) of this evaluation."""
        return metric_value(self.confusion, metric)

    def se(self, metric: str) -> float:
        """Standard error of `metric` (see `metric_se`)."""
        return metric_se(self.confusion, metric)


def metric_value(confusion: np.ndarray, metric: str) -> float:
    """accuracy: correct / all. balanced_accuracy: the mean recall over the classes that
    occur (scikit-learn's definition). macro_f1: the mean F1 over the classes that occur or
    are predicted (a class never predicted and absent scores nothing either way)."""
    confusion = confusion.astype(np.float64)
    tp, true, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    if metric == "accuracy":
        return float(tp.sum() / max(true.sum(), 1))
    if metric == "balanced_accuracy":
        present = true > 0
        return float((tp[present] / true[present]).mean()) if present.any() else math.nan
    if metric == "macro_f1":
        return _f1(tp, true, predicted) if confusion.sum() else math.nan
    raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")


def metric_se(confusion: np.ndarray, metric: str, resamples: int = BOOTSTRAP_RESAMPLES
              ) -> float:
    """Standard error of `metric` over the split's examples. Accuracy: binomial. Balanced
    accuracy: the classes' binomial recalls, averaged (sqrt(Σ r(1 − r)/n_c) / K). Macro F1
    has no closed form: a bootstrap of the examples (each is one confusion cell, so a
    multinomial draw over the cells resamples them exactly), seeded, `resamples` draws."""
    n = int(confusion.sum())
    if n == 0:
        return math.nan
    if metric == "accuracy":
        p = np.trace(confusion) / n
        return math.sqrt(max(p * (1 - p), 0.0) / n)
    support = confusion.sum(1)
    present = support > 0
    if metric == "balanced_accuracy":
        recall = np.diag(confusion)[present] / support[present]
        return float(math.sqrt(float((recall * (1 - recall) / support[present]).sum()))
                     / present.sum())
    if metric != "macro_f1":
        raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
    k = confusion.shape[0]
    cells = np.flatnonzero(confusion)
    rows, cols = np.divmod(cells, k)
    diagonal = rows == cols
    draws = np.random.default_rng(0).multinomial(n, confusion.ravel()[cells] / n,
                                                 size=resamples)
    scores = np.empty(resamples)
    for b, drawn in enumerate(draws.astype(np.float64)):  # per class: O(cells), any K
        true = np.bincount(rows, drawn, minlength=k)
        predicted = np.bincount(cols, drawn, minlength=k)
        tp = np.bincount(rows[diagonal], drawn[diagonal], minlength=k)
        scores[b] = _f1(tp, true, predicted)
    return float(scores.std(ddof=1))


def _f1(tp: np.ndarray, true: np.ndarray, predicted: np.ndarray) -> float:
    denominator = true + predicted
    occurs = denominator > 0
    return float((2 * tp[occurs] / denominator[occurs]).mean())
