"""Validation predictions on disk and their alignment across preprocessing variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from automl.combine.predictions import Predictions, align, load, save


def test_predictions_round_trip_without_pickle(tmp_path: Path) -> None:
    found = Predictions(("a.png", "b.png"), np.array([[1.0, 2.0], [3.0, -1.0]], np.float32),
                        np.array([1, 0]))
    path = save(found, tmp_path / "preds" / "t1.safetensors")
    again = load(path)
    assert path.endswith("t1.safetensors")
    assert again.keys == found.keys
    assert np.array_equal(again.logits, found.logits)
    assert np.array_equal(again.labels, found.labels)
    assert [p.name for p in (tmp_path / "preds").iterdir()] == ["t1.safetensors"]  # whole


def test_a_file_without_keys_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"logits": np.zeros((1, 2), np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a predictions file"):
        load(tmp_path / "x.safetensors")


def test_align_orders_rows_by_key_and_checks_labels() -> None:
    a = Predictions(("x", "y", "z"), np.eye(3, dtype=np.float32)[[0, 1, 2]], np.array([0, 1, 2]))
    b = Predictions(("z", "x"), np.eye(3, dtype=np.float32)[[2, 0]], np.array([2, 0]))
    keys, labels, logits = align({"a": a, "b": b})
    assert keys == ("x", "z")
    assert labels.tolist() == [0, 2]
    assert np.array_equal(logits["a"], logits["b"])
    wrong = Predictions(("x",), np.zeros((1, 3), np.float32), np.array([1]))
    with pytest.raises(ValueError, match="labels differ"):
        align({"a": a, "wrong": wrong})


def test_rows_must_match() -> None:
    with pytest.raises(ValueError, match="one each per row"):
        Predictions(("x",), np.zeros((2, 3), np.float32), np.array([0, 1]))


def test_a_checkpoint_predicts_a_split_with_its_rows_keys(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import torch

    from automl.combine.predictions import predict_split
    from automl.trial.checkpoints import save_checkpoint
    from automl.trial.steps import setup_trial
    from tests.conftest import write_image_folder
    from tests.helpers import tiny_plan, tiny_tables

    tables, classes = tiny_tables(write_image_folder(tmp_path / "images"))
    plan = tiny_plan(classes, backbone="test_efficientnet", epochs=1)
    setup = setup_trial(plan)
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(setup.model, plan, tmp_path / "ckpt", val_accuracy=0.5, epoch=1)
    val = tables["val"]  # with each row's key, as the search's prepared shards
    (tmp_path / "val").mkdir()
    pq.write_table(val, tmp_path / "val" / "000000.parquet")
    found = predict_split(str(tmp_path / "ckpt"), str(tmp_path / "val"))
    assert found.keys == tuple(val.column("key").to_pylist())
    assert found.labels.tolist() == val.column("label").to_pylist()
    assert found.logits.shape == (val.num_rows, len(classes))
    assert np.isfinite(found.logits).all()
    again = save(found, tmp_path / "p.safetensors")
    assert torch.equal(torch.from_numpy(load(again).logits), torch.from_numpy(found.logits))
    assert (tmp_path / "p.safetensors").exists()


def test_the_loops_collector_keeps_keyed_rows_or_none() -> None:
    """Rows keep their keys in the order evaluated; a batch without keys (data prepared before
    keys existed) or a split too large to keep gives no predictions, not misaligned ones."""
    from automl.trial import predictions as kept

    collector = kept.Collector()
    for start in (0, 2):
        collector.add_keys(pa.table({"key": [f"k{start}", f"k{start + 1}"], "label": [0, 1]}))
        collector.add(torch.ones(2, 3) * start, torch.tensor([0, 1]))
    found = collector.gathered(world=1)
    assert found is not None and found.keys == ("k0", "k1", "k2", "k3")
    assert found.logits[:, 0].tolist() == [0, 0, 2, 2] and found.labels.tolist() == [0, 1, 0, 1]
    assert kept.from_bytes(kept.to_bytes(found)).keys == found.keys

    unkeyed = kept.Collector()
    unkeyed.add_keys(pa.table({"label": [0, 1]}))
    unkeyed.add(torch.ones(2, 3), torch.tensor([0, 1]))
    assert unkeyed.gathered(world=1) is None

    huge = kept.Collector()
    huge.keys = [str(i) for i in range(10)]
    huge.add(torch.zeros(10, kept.MAX_VALUES // 5), torch.zeros(10, dtype=torch.long))
    assert huge.local() is None
