"""Transferability scores (LogME, k-NN), Kendall's τ, the feature cache and the ranking's
effect on the search (seed points, pruning, board columns, report section), without Ray."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from optuna.distributions import FloatDistribution

from automl.config import parse as config
from automl.search import ranking, transferability
from automl.search.transferability import kendall_tau, knn_accuracy, logme, ranking_quality
from automl.trial import features
from tests.conftest import write_image_folder
from tests.helpers import tiny_plan, tiny_tables


def _clusters(separation: float, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centers = rng.normal(size=(3, 16)) * separation
    return centers[labels] + rng.normal(size=(n, 16)), labels


def test_scores_prefer_features_that_separate_the_classes() -> None:
    good, labels = _clusters(separation=4.0)
    poor, _ = _clusters(separation=0.1)
    assert logme(good, labels) > logme(poor, labels)
    assert knn_accuracy(good[:200], labels[:200], good[200:], labels[200:]) > 0.95
    assert knn_accuracy(poor[:200], labels[:200], poor[200:], labels[200:]) < 0.6


def test_kendall_tau_counts_agreeing_pairs() -> None:
    assert kendall_tau([1, 2, 3], [0.1, 0.5, 0.9]) == 1.0
    assert kendall_tau([1, 2, 3], [0.9, 0.5, 0.1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau([1], [1]) is None and kendall_tau([1, 1], [2, 3]) is None


class _Rows:
    """A Ray Dataset's `iter_batches` over an in-memory table."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def iter_batches(self, batch_size: int, batch_format: str) -> Any:
        return iter(self.table.to_batches(max_chunksize=batch_size))


def test_features_are_extracted_once_then_read_from_the_cache(tmp_path: Path) -> None:
    tables, classes = tiny_tables(write_image_folder(tmp_path / "imgs", per_class=6))
    plan = tiny_plan(classes, unfreeze_fraction=0.0).to_dict()
    where = features.feature_location(str(tmp_path / "data"), "variant", plan, (1000, 500))
    train, val = _Rows(pa.Table.from_batches(tables["train"].to_batches())), _Rows(tables["val"])
    first = features.extract(plan, train, val, where)
    assert not first["cached"] and Path(where).is_file()
    import timm

    width = timm.create_model("test_resnet").num_features  # the head's input: pooled features
    assert first["train"].shape == (tables["train"].num_rows, width)
    assert list(first["val_labels"]) == tables["val"].column("label").to_pylist()
    again = features.extract(plan, train, val, where)
    assert again["cached"] and np.array_equal(again["train"], first["train"])
    assert not list(Path(where).parent.glob("*.partial"))  # written whole, then moved
    other = features.feature_location(str(tmp_path / "data"), "variant",
                                      {**plan, "backbone": "test_vit"}, (1000, 500))
    assert other != where  # content-keyed: another backbone, another file
    assert set(transferability.score(first)) == {"knn_accuracy", "logme"}


def _cfg(tmp_path: Path, prune: int | None = None) -> config.Config:
    return config.from_dict({
        "task": "image",
        "backbones": [{"name": "test_resnet", "weights": "hub"},
                      {"name": "test_vit", "weights": "hub"},
                      {"name": "test_efficientnet", "weights": "hub"},
                      {"name": "test_resnet", "weights": "scratch"}],
        "data": {"path": str(tmp_path)},
        "search": {"prune_backbones": prune},
    })


RANKED = {"test_vit:hub": {"knn_accuracy": 0.9, "logme": 1.0},
          "test_efficientnet:hub": {"knn_accuracy": 0.7, "logme": 0.5},
          "test_resnet:hub": {"knn_accuracy": 0.5, "logme": 0.2}}


def test_pruning_keeps_the_top_k_and_the_scratch_baseline(tmp_path: Path) -> None:
    kept = ranking.prune(_cfg(tmp_path, prune=1), RANKED, log=lambda _: None)
    assert [b.label for b in kept.backbones] == ["test_vit:hub", "test_resnet:scratch"]
    assert ranking.prune(_cfg(tmp_path), RANKED, log=print) == _cfg(tmp_path)
    # No unfreeze choices: the best-ranked backbone, then the scratch baseline once.
    assert ranking.seed_points(RANKED, kept, 2) == [{"backbone": "test_vit:hub"},
                                                    {"backbone": "test_resnet:scratch"}]
    with pytest.raises(config.ConfigError, match=r"search\.prune_backbones"):
        config.from_dict({"backbones": ["test_resnet"], "search": {"prune_backbones": 0}})


def test_the_report_says_how_well_the_ranking_predicted_the_accuracy() -> None:
    board = pd.DataFrame({
        "backbone": ["a", "a", "b", "c", "d"], "weights": ["hub"] * 4 + ["scratch"],
        "val_accuracy": [0.8, 0.9, 0.7, 0.6, 0.3],
        "knn_accuracy": [0.7, 0.7, 0.5, 0.6, None], "logme": [1.0, 1.0, 0.2, 0.1, None],
    })
    table = ranking_quality(board)
    assert list(table.index) == ["a:hub", "c:hub", "b:hub"]  # scratch is not scored
    assert table.loc["a:hub", "best_val_accuracy"] == 0.9 and table.loc["a:hub", "trials"] == 2
    assert table.attrs["kendall_tau"]["logme"] == 1.0
    assert table.attrs["kendall_tau"]["knn_accuracy"] == pytest.approx(1 / 3)
    from automl.report.html import _ranking

    assert "Kendall" in "".join(_ranking(board)) and _ranking(board.drop(columns=[
        "knn_accuracy"])) == []


def test_the_first_trials_cover_each_depth_and_the_scratch_baseline(tmp_path: Path) -> None:
    cfg = config.from_dict({
        "backbones": ["test_vit", "test_efficientnet", {"name": "test_resnet",
                                                        "weights": "scratch"}],
        "space": {"unfreeze_fraction": {"choices": [0.0, 0.5, 1.0]}},
        "search": {"explore_first": True}, "data": {"path": str(tmp_path)}})
    points = ranking.seed_points(RANKED, cfg, 2)
    assert points == [
        {"backbone": "test_vit:hub", "unfreeze_fraction": 0.0},
        {"backbone": "test_efficientnet:hub", "unfreeze_fraction": 0.5},
        {"backbone": "test_vit:hub", "unfreeze_fraction": 1.0},
        {"backbone": "test_resnet:scratch", "unfreeze_fraction": 1.0},
    ]
    # Unranked (search.rank_backbones: false): the backbones in the space's order.
    assert ranking.seed_points({}, cfg, 2)[1]["backbone"] == "test_efficientnet:hub"
    ranged = dataclasses.replace(cfg, space={**cfg.space, "unfreeze_fraction": FloatDistribution(
        0.0, 1.0)})
    assert [p["unfreeze_fraction"] for p in ranking.seed_points(RANKED, ranged, 2)] == [
        0.0, 0.5, 1.0, 1.0]
    few = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, num_samples=2))
    assert ranking.seed_points(RANKED, few, 2) == [
        {"backbone": "test_vit:hub", "unfreeze_fraction": 0.0},
        {"backbone": "test_resnet:scratch", "unfreeze_fraction": 1.0}]  # still in 2 trials
    plain = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search,
                                                                explore_first=False))
    assert ranking.seed_points(RANKED, plain, 2) == [
        {"backbone": "test_vit:hub"}, {"backbone": "test_efficientnet:hub"},
        {"backbone": "test_resnet:scratch", "unfreeze_fraction": 1.0}]


def test_the_portfolio_starts_from_known_recipes_inside_the_space(tmp_path: Path) -> None:
    cfg = config.from_dict({
        "backbones": ["test_vit", "test_efficientnet", {"name": "test_resnet",
                                                        "weights": "scratch"}],
        "space": {"unfreeze_fraction": {"choices": [0.0, 0.25, 0.57, 1.0]},
                  "head_lr": {"low": 1e-3, "high": 1e-2, "log": True},
                  "backbone_lr": {"low": 2e-4, "high": 2e-3, "log": True}},
        "search": {"portfolio": True}, "data": {"path": str(tmp_path)}})
    points = ranking.seed_points(RANKED, cfg, 2)
    assert points[:2] == [
        {"backbone": "test_vit:hub", "unfreeze_fraction": 0.57, "head_lr": 3e-3,
         "backbone_lr": 3e-4},
        {"backbone": "test_vit:hub", "unfreeze_fraction": 1.0, "head_lr": 3e-3,
         "backbone_lr": 2e-4},  # clipped into the range
    ]
    assert points[2:] == [{"backbone": "test_vit:hub"}, {"backbone": "test_efficientnet:hub"},
                          {"backbone": "test_resnet:scratch", "unfreeze_fraction": 1.0}]
    # A space that fixes a knob keeps it: the recipe says nothing about it.
    fixed = dataclasses.replace(cfg, space={**cfg.space, "head_lr": 1e-3})
    assert "head_lr" not in ranking.portfolio_points(fixed, "test_vit:hub")[0]
