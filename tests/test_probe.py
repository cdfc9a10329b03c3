"""Linear probes on cached frozen features: the cache holds exactly what the head sees in the
streaming loop, is built once and then read, and the head trains and evaluates as it would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from automl.data.batches import local_batches
from automl.trial import probe
from automl.trial.predictions import Collector
from automl.trial.steps import evaluate, setup_trial
from tests.helpers import CPU, build_model, tiny_plan, tiny_tables


class _Rows:
    """`iter_batches` of a Ray Dataset over an in-memory table."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def iter_batches(self, batch_size: int, batch_format: str) -> Any:
        return (pa.Table.from_batches([b])
                for b in self.table.to_batches(max_chunksize=batch_size))


@pytest.mark.parametrize("task,name", [("image", "test_resnet"), ("image", "test_vit"),
                                       ("text", "bert")])
def test_probe_module_is_the_head_alone(task: str, name: str, tiny_bert: Path) -> None:
    """The module the probe trains holds every head parameter and nothing else (or there is
    none, and the trial streams)."""
    if task == "text":
        model, layers = build_model("text", str(tiny_bert), f"file:{tiny_bert}", 3)
    else:
        model, layers = build_model("image", name, "scratch", 3)
    found = probe.probe_module(model, layers.head)
    if found is not None:
        owned = {f"{found}.{n}" for n, _ in model.get_submodule(found).named_parameters()}
        assert owned == set(layers.head)
    assert found is not None or name == "test_vit"


def test_cache_holds_the_heads_inputs_and_is_reused(image_folder: Path, tmp_path: Path) -> None:
    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, unfreeze_fraction=0.0, hflip=True)
    setup = setup_trial(plan)
    location = probe.cache_location(str(tmp_path), plan)
    train, val = _Rows(tables["train"]), _Rows(tables["val"])
    built = probe.CachedProbe(setup, plan, "fc", train, val, location, CPU, None)
    assert built.cache == "built" and Path(location).is_file()
    # Two views of every training image (original, flipped), one of every validation image.
    assert built.views.shape[:2] == (2, tables["train"].num_rows)
    assert len(built.val) == tables["val"].num_rows

    # The cached validation features through the head give the streaming loop's figures.
    kept_streaming, kept_cached = Collector(), Collector()
    streamed = evaluate(setup, plan, CPU, local_batches(tables["val"], 64), kept_streaming)
    assert torch.allclose(built.evaluate(kept_cached), streamed, rtol=1e-4, atol=1e-4)
    # Both keep the same rows' predictions, each under its row's key.
    cached_rows, streamed_rows = kept_cached.local(), kept_streaming.local()
    assert cached_rows is not None and streamed_rows is not None
    assert cached_rows.keys == streamed_rows.keys == tuple(tables["val"].column("key")
                                                           .to_pylist())
    assert np.allclose(cached_rows.logits, streamed_rows.logits, atol=1e-4)
    assert np.array_equal(cached_rows.labels, tables["val"].column("label").to_numpy())

    again = probe.CachedProbe(setup_trial(plan), plan, "fc", train, val, location, CPU, None)
    assert again.cache == "hit" and torch.equal(again.views, built.views)
    assert not list(tmp_path.glob("*.partial"))

    other = tiny_plan(classes, unfreeze_fraction=0.0, hflip=False)
    assert probe.cache_location(str(tmp_path), other) != location


def test_head_learns_on_cached_features_and_only_the_head_moves(image_folder: Path,
                                                                tmp_path: Path) -> None:
    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, unfreeze_fraction=0.0, head_lr=0.05, epochs=8)
    setup = setup_trial(plan)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    cached = probe.CachedProbe(setup, plan, "fc", _Rows(tables["train"]), _Rows(tables["val"]),
                               probe.cache_location(str(tmp_path), plan), CPU, None)
    losses = [cached.train_epoch(epoch).loss for epoch in range(1, 9)]
    assert losses[-1] < losses[0]
    after = setup.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"fc.weight", "fc.bias"}


def test_epochs_of_fixed_steps_walk_through_shuffled_passes(image_folder: Path,
                                                           tmp_path: Path) -> None:
    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, unfreeze_fraction=0.0, batch_size=4)
    cached = probe.CachedProbe(setup_trial(plan), plan, "fc", _Rows(tables["train"]),
                               _Rows(tables["val"]), probe.cache_location(str(tmp_path), plan),
                               CPU, steps=5)
    n = tables["train"].num_rows
    stream = torch.cat([cached._order(e) for e in range(1, 1 + (3 * n) // 20)])
    # Every example once per pass, in a different order each pass.
    assert sorted(stream[:n].tolist()) == list(range(n))
    assert not torch.equal(stream[:n], stream[n:2 * n])
    assert torch.equal(cached._order(2), cached._order(2))  # the same after a resume
