"""`search.metric` (accuracy | balanced_accuracy | macro_f1) from confusion counts, class
weights and imbalance detection: exact values on hand-made counts, the same counts summed
over two DDP ranks, and the board ranked by the chosen metric."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from automl.config import parse as config
from automl.data.catalog import balanced_weights, imbalance_note
from automl.errors import ConfigError
from automl.runs.board_io import format_table
from automl.runs.history import TrialRecord
from automl.runs.leaderboard import build_leaderboard
from automl.trial import recipe
from automl.trial.classification import (
    Evaluation,
    count_batch,
    metric_se,
    metric_value,
    new_counts,
)
from automl.trial.context import SearchContext
from automl.trial.steps import sum_over_ranks
from tests.test_leaderboard import PARAMS, STATIC_JSON

# 3 classes; rows = true, columns = predicted. Class 2 is rare and mostly missed.
CONFUSION = np.array([[50, 0, 0],
                      [5, 40, 5],
                      [8, 0, 2]])


def test_metric_values_on_hand_made_counts() -> None:
    assert metric_value(CONFUSION, "accuracy") == pytest.approx(92 / 110)
    recalls = [50 / 50, 40 / 50, 2 / 10]
    assert metric_value(CONFUSION, "balanced_accuracy") == pytest.approx(np.mean(recalls))
    f1 = [2 * 50 / (50 + 63), 2 * 40 / (50 + 40), 2 * 2 / (10 + 7)]
    assert metric_value(CONFUSION, "macro_f1") == pytest.approx(np.mean(f1))
    # A class never true and never predicted takes no part; predicted but absent scores 0.
    padded = np.zeros((4, 4), dtype=int)
    padded[:3, :3] = CONFUSION
    assert metric_value(padded, "macro_f1") == pytest.approx(np.mean(f1))
    assert metric_value(padded, "balanced_accuracy") == pytest.approx(np.mean(recalls))
    padded[0, 3] = 1
    assert metric_value(padded, "macro_f1") < np.mean(f1)
    with pytest.raises(ValueError, match="unknown metric"):
        metric_value(CONFUSION, "auc")


def test_standard_errors() -> None:
    p = 92 / 110
    assert metric_se(CONFUSION, "accuracy") == pytest.approx(math.sqrt(p * (1 - p) / 110))
    recalls, support = np.array([1.0, 0.8, 0.2]), np.array([50, 50, 10])
    assert metric_se(CONFUSION, "balanced_accuracy") == pytest.approx(
        math.sqrt((recalls * (1 - recalls) / support).sum()) / 3)
    # The bootstrap's SE of macro F1 is of the same order as the others, seeded (repeatable),
    # and shrinks like 1/√n when every count is 100× larger.
    se = metric_se(CONFUSION, "macro_f1")
    assert 0.01 < se < 0.15 and se == metric_se(CONFUSION, "macro_f1")
    assert metric_se(CONFUSION * 100, "macro_f1") == pytest.approx(se / 10, rel=0.3)
    assert math.isnan(metric_se(np.zeros((2, 2), dtype=int), "accuracy"))


def test_counts_from_logits_match_the_confusion_matrix() -> None:
    labels = torch.tensor([0, 1, 2, 2, 1])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 2, 2]), 3).float() * 5
    counts = new_counts(3)
    count_batch(counts, logits[:2], labels[:2])
    count_batch(counts, logits[2:], labels[2:])
    found = Evaluation.from_counts(counts.tolist(), 3)
    assert found.examples == 5
    assert found.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    expected = torch.nn.functional.cross_entropy(logits, labels)
    assert found.loss == pytest.approx(float(expected), rel=1e-6)
    assert found.score("balanced_accuracy") == pytest.approx((1 + 0.5 + 0.5) / 3)


def _rank(rank: int, port: int, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=2)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 4, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    mine = slice(0, 13) if rank == 0 else slice(13, 40)  # unequal shards, like validation
    counts = new_counts(4)
    count_batch(counts, logits[mine], labels[mine])
    reduced = sum_over_ranks(counts, 2)
    if rank == 0:
        Path(out).write_text(json.dumps(reduced))
    torch.distributed.destroy_process_group()


def test_two_ranks_sum_to_the_exact_metrics_of_the_whole_split(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "reduced.txt"
    mp.spawn(_rank, args=(port, str(out)), nprocs=2)
    reduced = Evaluation.from_counts(json.loads(out.read_text()), 4)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 4, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    whole = new_counts(4)
    count_batch(whole, logits, labels)
    single = Evaluation.from_counts(whole.tolist(), 4)
    assert (reduced.confusion == single.confusion).all() and reduced.examples == 40
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert reduced.score(metric) == single.score(metric)
    assert reduced.loss == pytest.approx(single.loss)


def test_balanced_class_weights_and_the_weighted_loss() -> None:
    weights = balanced_weights(np.array([90, 10]))
    assert weights == pytest.approx((100 / 180, 100 / 20))
    plan = type("Plan", (), {"class_weights": weights, "label_smoothing": 0.0})()
    logits, labels = torch.randn(6, 2), torch.tensor([0, 0, 0, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(weights))
    assert recipe.loss_fn(logits, labels, plan) == pytest.approx(float(expected))
    # Soft targets (mixup) that are one-hot give the same weighted mean.
    soft = torch.nn.functional.one_hot(labels, 2).float()
    assert recipe.loss_fn(logits, soft, plan) == pytest.approx(float(expected))
    unweighted = type("Plan", (), {"class_weights": None, "label_smoothing": 0.0})()
    assert recipe.loss_fn(logits, soft, unweighted) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)))


def test_strong_imbalance_is_said_once_with_what_to_set() -> None:
    classes = ("cat", "dog", "fox")
    assert imbalance_note(np.array([100, 90, 40]), classes, "accuracy", "none") is None
    line = imbalance_note(np.array([100, 90, 10]), classes, "accuracy", "none")
    assert line is not None and "'cat' has 100" in line and "'fox' 10 (10×)" in line
    assert "search.metric: balanced_accuracy and train.class_weights: balanced" in line
    done = imbalance_note(np.array([100, 90, 10]), classes, "macro_f1", "balanced")
    assert done is not None and "consider" not in done


def test_metric_and_class_weights_are_validated(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("backbones: [test_resnet]\nsearch: {metric: balanced_accuracy}\n"
                     "train: {class_weights: balanced}\n")
    cfg = config.load(space)
    assert cfg.search.objective == "val_balanced_accuracy"
    assert cfg.train.class_weights == "balanced"
    space.write_text("backbones: [test_resnet]\nsearch: {metric: val_accuracy}\n")
    assert config.load(space).search.objective == "val_accuracy"  # older spaces' spelling
    space.write_text("backbones: [test_resnet]\nsearch: {metric: auc}\n"
                     "train: {class_weights: inverse}\n")
    with pytest.raises(ConfigError) as info:
        config.load(space)
    assert "search.metric: must be one of ['accuracy', 'balanced_accuracy', 'macro_f1']" \
        in str(info.value)
    assert "train.class_weights: must be one of ['none', 'balanced']" in str(info.value)


def _epoch(epoch: int, accuracy: float, balanced: float) -> dict:
    return {"epoch": epoch, "val_accuracy": accuracy, "val_balanced_accuracy": balanced,
            "val_balanced_accuracy_se": 0.02, "val_examples": 100, "unfreeze_depth": 1,
            "checkpoint_path": f"/ck/{epoch}"}


def test_the_board_ranks_and_picks_epochs_by_the_search_metric() -> None:
    records = [
        TrialRecord("majority", {**PARAMS, "backbone": "m:package"},
                    [_epoch(1, 0.90, 0.50), _epoch(2, 0.91, 0.52)], None, 10, True),
        TrialRecord("balanced", {**PARAMS, "backbone": "m:package"},
                    [_epoch(1, 0.85, 0.80), _epoch(2, 0.88, 0.75)], None, 10, True),
    ]
    by_accuracy = build_leaderboard(records, SearchContext.from_json(STATIC_JSON))
    assert by_accuracy["trial_id"].tolist() == ["majority", "balanced"]
    assert by_accuracy.iloc[1]["best_epoch"] == 2
    context = SearchContext.from_json({**STATIC_JSON, "metric": "balanced_accuracy"})
    board = build_leaderboard(records, context)
    assert board["trial_id"].tolist() == ["balanced", "majority"]
    top = board.iloc[0]
    assert top["best_epoch"] == 1 and top["checkpoint"] == "/ck/1"  # its best balanced epoch
    assert top["metric"] == "balanced_accuracy" and top["val_se"] == 0.02
    assert "val_balanced_accuracy" in format_table(board).splitlines()[0]
