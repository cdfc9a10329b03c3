"""The test split: held out before anything else, never read by trials, ranking or selection,
and scored only for the selected model after the search."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl.config import parse
from automl.config.schema import DataConfig
from automl.data.catalog import (
    SEARCH_SPLITS,
    TEST,
    TRAIN,
    UNUSED,
    VAL,
    holdout_fraction,
    split_with_test,
    stratified_split,
)
from automl.data.shards import prepare_local
from automl.errors import ConfigError, DataError
from automl.export.score import SplitScore, score_checkpoint
from automl.tasks import get_task
from automl.trial.metrics import binomial_se
from tests.conftest import write_image_folder, write_text_csv

PRE = {"image_size": 24, "interpolation": "bilinear", "crop_pct": 0.875,
       "mean": [0.5] * 3, "std": [0.5] * 3}


def test_the_default_holds_out_a_tenth_from_3000_examples_with_at_least_300() -> None:
    assert holdout_fraction(2999, None)[0] == 0.0
    assert "no test split: 2999 examples" in str(holdout_fraction(2999, None)[1])
    assert holdout_fraction(3000, None) == (0.1, None)
    assert holdout_fraction(100_000, None) == (0.1, None)
    assert holdout_fraction(5, 0.2) == (0.2, None)  # what the user set, no note


def test_split_with_test_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [100, 60, 40])
    split = split_with_test(labels, 0.2, 0.1, seed=0)
    for cls, n in zip(range(3), (100, 60, 40), strict=True):
        assert (split[labels == cls] == TEST).sum() == round(n * 0.1)
    assert set(np.unique(split)) == {TRAIN, VAL, TEST}
    assert np.array_equal(split, split_with_test(labels, 0.2, 0.1, seed=0))
    assert not np.array_equal(split, split_with_test(labels, 0.2, 0.1, seed=1))
    # Without a test split it is exactly the train/val split of before.
    train, val = stratified_split(labels, 0.2, 0)
    plain = split_with_test(labels, 0.2, 0.0, seed=0)
    assert np.array_equal(np.flatnonzero(plain == TRAIN), train)
    assert np.array_equal(np.flatnonzero(plain == VAL), val)


def test_a_class_too_small_keeps_two_examples_for_train_and_val() -> None:
    split = split_with_test(np.array([0, 0, 1, 1, 1, 1]), 0.5, 0.5, seed=0)
    assert (split[:2] != TEST).all() and (split != UNUSED).all()


def test_image_folder_test_fraction_holds_out_before_the_val_split(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=20)
    task = get_task("image")
    catalog = task.scan(DataConfig(path=str(folder), val_fraction=0.25, test_fraction=0.2))
    assert catalog.count(TEST) == 12 and catalog.count(VAL) + catalog.count(TRAIN) == 48
    tables = prepare_local(task, catalog, DataConfig(path=str(folder), test_fraction=0.2), PRE)
    assert set(tables) == {"train", "val", "test"} and tables["test"].num_rows == 12
    assert SEARCH_SPLITS == ("train", "val")  # what trials, ranking and caches are given


def test_image_test_path_folder_and_manifest(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=8)
    tests = write_image_folder(tmp_path / "tests", per_class=5, seed=1)
    task = get_task("image")
    catalog = task.scan(DataConfig(path=str(folder), test_path=str(tests)))
    assert catalog.count(TEST) == 15 and catalog.count(TRAIN) + catalog.count(VAL) == 24
    test_rows = [catalog.locations[i] for i in np.flatnonzero(catalog.split == TEST)]
    assert all(str(tests) in location for location in test_rows)
    assert not catalog.notes  # a test set was given: nothing to say
    manifest = tmp_path / "test.csv"
    pd.DataFrame({"path": [str(p) for p in sorted(tests.rglob("*.png"))],
                  "label": [p.parent.name for p in sorted(tests.rglob("*.png"))]}
                 ).to_csv(manifest, index=False)
    again = task.scan(DataConfig(path=str(folder), test_path=str(manifest)))
    assert again.count(TEST) == 15 and again.fingerprint != catalog.fingerprint
    (tests / "other").mkdir()
    (tests / "left" / "000.png").rename(tests / "other" / "000.png")
    with pytest.raises(DataError, match=r"label value.*'other'.*never occur"):
        task.scan(DataConfig(path=str(folder), test_path=str(tests)))
    with pytest.raises(DataError, match=r"data.test_path .* does not exist"):
        task.scan(DataConfig(path=str(folder), test_path=str(tmp_path / "nope")))


def test_small_data_says_why_it_has_no_test_split(tmp_path: Path) -> None:
    catalog = get_task("image").scan(DataConfig(path=str(write_image_folder(tmp_path / "i"))))
    assert catalog.count(TEST) == 0 and "no test split: 36 examples" in catalog.notes[0]


def test_text_test_fraction_and_test_path(tmp_path: Path) -> None:
    task = get_task("text")
    table = write_text_csv(tmp_path / "reviews.csv", per_class=30)
    held = task.scan(DataConfig(path=str(table), test_fraction=0.2))
    assert held.count(TEST) == 12
    tests = write_text_csv(tmp_path / "tests.csv", per_class=7, seed=1)
    val = write_text_csv(tmp_path / "val.csv", per_class=4, seed=2)
    both = task.scan(DataConfig(path=str(table), val_path=str(val), test_path=str(tests)))
    assert (both.count(TRAIN), both.count(VAL), both.count(TEST)) == (60, 8, 14)
    assert both.locations == (str(table), str(val), str(tests))
    assert np.array_equal(both.split[-14:], np.full(14, TEST))


def test_test_fraction_is_validated(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(f"task: image\ndata: {{path: {tmp_path}, test_fraction: 0.7, "
                     f"test_path: {tmp_path}}}\nbackbones: [{{name: resnet18}}]\n")
    with pytest.raises(ConfigError) as found:
        parse.load(space)
    assert "data.test_fraction: must be between 0 and 0.5" in str(found.value)
    assert "data.test_fraction: cannot be set with data.test_path" in str(found.value)


def test_scoring_a_checkpoint_counts_every_test_row(tmp_path: Path) -> None:
    """The scorer's accuracy is the model's argmax agreement on the rows, counted by hand."""
    import pyarrow.parquet as pq
    import torch

    from automl.trial.checkpoints import save_checkpoint
    from automl.trial.steps import setup_trial
    from tests.helpers import tiny_plan, tiny_tables

    folder = write_image_folder(tmp_path / "images", per_class=10)
    tables, classes = tiny_tables(folder)
    plan = tiny_plan(classes)
    setup = setup_trial(plan)
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(setup.model, plan, tmp_path / "ckpt")
    (tmp_path / "test").mkdir()
    pq.write_table(tables["val"], tmp_path / "test" / "000000.parquet")
    score = score_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "test"))
    task = get_task("image")
    inputs, labels = task.collate(tables["val"], plan, torch.device("cpu"))
    with torch.inference_mode():
        expected = (setup.model.eval()(inputs).argmax(1) == labels).float().mean().item()
    assert score.examples == tables["val"].num_rows
    assert score.accuracy == pytest.approx(expected)
    assert score.se == pytest.approx(math.sqrt(expected * (1 - expected) / score.examples))
    assert json.loads(json.dumps(score.to_json()))["se"] == pytest.approx(score.se)


def test_binomial_standard_error() -> None:
    assert binomial_se(0.9, 400) == pytest.approx(0.015)
    assert math.isnan(binomial_se(0.9, 0))
    score = SplitScore(0.7, 100, np.array([[30, 20], [30, 20]]))
    assert score.accuracy == 0.5 and score.se == pytest.approx(0.05)


def test_the_search_loads_no_test_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials, the ranking and feature caches get `load_datasets`' datasets: no test split."""
    from automl.data import shards

    loaded: list[str] = []
    monkeypatch.setattr(shards, "dataset_of", lambda folder, columns: loaded.append(folder))
    variant = shards.PreparedVariant("k", "/cache/k", ("label", "image"), 8, 2, 0, (), 0.0,
                                     test_rows=5)
    datasets = shards.load_datasets(shards.PreparedData(("a",), {"k": variant}, {"b": "k"}))
    assert set(datasets["k"]) == {"train", "val"}
    assert loaded == ["/cache/k/train", "/cache/k/val"]


def test_the_demo_test_sets_are_written_once_and_never_over_a_file(tmp_path: Path) -> None:
    """`make demo` writes the test splits only where nothing is: a file already there (the
    user's, or an earlier run's) is left byte for byte."""
    from automl.data import demo

    table = tmp_path / "reviews.csv"
    table.write_text("text,label\nkeep me,fresh\n")
    held = tmp_path / "held.csv"
    held.write_text("mine\n")
    assert demo.write_rotten_tomatoes(table) == table
    assert demo.write_rotten_tomatoes_test(held, table) == held
    assert table.read_text() == "text,label\nkeep me,fresh\n" and held.read_text() == "mine\n"
    fresh = demo.write_rotten_tomatoes_test(tmp_path / "new.csv", table, per_class=3)
    rows = pd.read_csv(fresh)
    assert list(rows.columns) == ["text", "label"] and len(rows) == 6
    assert "keep me" not in set(rows["text"])
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, nothing left behind
