"""Cheap estimates of how well a frozen backbone's features suit the task, before any
fine-tune: LogME (You et al., ICML 2021) and a k-NN accuracy on held-out examples (which
Sorkhei et al. 2025 found more reliable than 23 published estimators). Plain NumPy.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

KNN_K = 10
SCORES = ("knn_accuracy", "logme")
"""Board columns of a trial's backbone score; `knn_accuracy` orders the ranking."""


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Log maximum evidence per example of a Bayesian linear model from `features` (N×D) to
    one-hot `labels`, averaged over classes; higher is better.

    The prior precision α and noise precision β are fixed-point iterated (MacKay's
    evidence maximization) in the eigenbasis of FᵀF, as in the authors' reference code.
    """
    f = features.astype(np.float64)
    n, d = f.shape
    v, s, _ = np.linalg.svd(f.T @ f)  # FᵀF = V diag(s) Vᵀ
    evidences = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(np.float64)
        projected = v.T @ (f.T @ y)
        alpha, beta = 1.0, 1.0
        for _ in range(11):  # converges in 2-3 steps in practice
            gamma = float((beta * s / (alpha + beta * s)).sum())
            m = v @ (beta * projected / (alpha + beta * s))
            alpha_de = float(m @ m)
            beta_de = float(((y - f @ m) ** 2).sum())
            new_alpha = gamma / (alpha_de + 1e-5)
            new_beta = (n - gamma) / (beta_de + 1e-5)
            done = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 0.01
            alpha, beta = new_alpha, new_beta
            if done:
                break
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta)
                    - 0.5 * np.log(alpha + beta * s).sum()
                    - beta / 2 * beta_de - alpha / 2 * alpha_de - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, val: np.ndarray,
                 val_labels: np.ndarray, k: int = KNN_K) -> float:
    """Accuracy on `val` of a cosine-similarity k-NN majority vote over `train`."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    k = max(1, min(k, len(train)))
    similarity = unit(val) @ unit(train).T
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    votes = train_labels[nearest]
    classes = np.unique(train_labels)
    counts = (votes[:, :, None] == classes[None, None, :]).sum(axis=1)
    predicted = classes[counts.argmax(axis=1)]
    return float((predicted == val_labels).mean())


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's τ-b between two paired lists (None with fewer than two pairs or no
    ordering on one side): +1 when the score orders backbones as their accuracy does."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    concordant = discordant = ties_x = ties_y = 0
    for i, j in pairs:
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    ordered = concordant + discordant
    denominator = np.sqrt((ordered + ties_x) * (ordered + ties_y))
    return None if not pairs or denominator == 0 else float((concordant - discordant)
                                                            / denominator)


def ranking_quality(board: pd.DataFrame) -> pd.DataFrame:
    """Per scored backbone: its scores and best fine-tuned accuracy; `attrs["kendall_tau"]`
    holds τ of each score against that accuracy (None with fewer than two backbones)."""
    if board.empty or "knn_accuracy" not in board or board["knn_accuracy"].isna().all():
        return pd.DataFrame()
    scored = board[board["knn_accuracy"].notna() & board["val_accuracy"].notna()]
    table = scored.assign(choice=scored["backbone"] + ":" + scored["weights"].astype(str)) \
        .groupby("choice").agg(knn_accuracy=("knn_accuracy", "first"),
                               logme=("logme", "first"),
                               best_val_accuracy=("val_accuracy", "max"),
                               trials=("val_accuracy", "size")) \
        .sort_values("knn_accuracy", ascending=False)
    table.attrs["kendall_tau"] = {
        score: kendall_tau(table[score].tolist(), table["best_val_accuracy"].tolist())
        for score in SCORES}
    return table


def score(found: dict[str, Any]) -> dict[str, float]:
    """LogME and k-NN accuracy of one backbone's extracted features (`features.extract`)."""
    return {
        "logme": logme(found["train"], found["train_labels"]),
        "knn_accuracy": knn_accuracy(found["train"], found["train_labels"], found["val"],
                                     found["val_labels"]),
    }
