"""The recorded-curves benchmark (bench/record_curves.py, bench/replay.py): the sample covers
every adaptation cell, the replay trainable plays a recorded curve back with its timing, and
the real searcher and scheduler run end to end on a tiny table in seconds."""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from automl.config import parse

ROOT = Path(__file__).resolve().parents[1]
SPACE = """
backbones: [test_resnet, {name: test_resnet, weights: scratch}]
space:
  unfreeze_fraction: {choices: [0.0, 0.5, 1.0]}
  head_lr: {low: 1.0e-4, high: 1.0e-1, log: true}
  backbone_lr: {low: 1.0e-5, high: 1.0e-2, log: true}
  batch_size: {choices: [16, 32]}
train: {epochs: 3}
search: {grace_period: 1, reduction_factor: 3}
"""


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


replay = _bench("replay")
record = _bench("record_curves")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(SPACE)
    return path


def _accuracy(params: dict[str, Any], epoch: int) -> float:
    """A made-up response: pretrained and partly unfrozen is better, head LR best at 3e-3."""
    base = 0.5 if params["backbone"].endswith("scratch") else 0.8
    base += 0.05 * float(params["unfreeze_fraction"] == 0.5)
    base -= 0.03 * abs(math.log10(params["head_lr"] / 3e-3))
    return round(base - 0.04 * (3 - epoch), 4)


@pytest.fixture(scope="module")
def table(space: Path) -> Any:
    cfg = parse.load(space)
    configs = record.sample_configs(cfg, 36, seed=0)
    rows = tuple(replay.Recorded(c, tuple(_accuracy(c, e) for e in (1, 2, 3)),
                                 (10.0, 20.0, 30.0), 1.0) for c in configs)
    return replay.Table(rows, cfg)


def test_the_sample_covers_every_adaptation_cell_and_only_acting_knobs(space: Path) -> None:
    cfg = parse.load(space)
    configs = record.sample_configs(cfg, 36, seed=0)
    cells = {(c["backbone"], c["unfreeze_fraction"]) for c in configs}
    assert len(cells) == 6  # 2 backbones (one the scratch baseline) × 3 depths
    assert all(("backbone_lr" in c) == (c["unfreeze_fraction"] > 0) for c in configs)
    assert record.sample_configs(cfg, 36, seed=0) == configs  # seeded


def test_the_replay_trial_plays_back_a_recorded_curve_and_its_timing() -> None:
    recorded = replay.Recorded({"backbone": "b"}, (0.7, 0.8), (12.0, 20.0), 2.0)
    results = replay.ReplayTrial(recorded, 100.0, "val_accuracy").results()
    assert [at for at, _ in results] == [114.0, 122.0]
    assert [(r["epoch"], r["val_accuracy"], r["time_total_s"]) for _, r in results] == [
        (1, 0.7, 12.0), (2, 0.8, 20.0)]


def test_nearest_keeps_the_cell_then_the_closest_knobs(table: Any) -> None:
    wanted = {"backbone": "test_resnet:hub", "unfreeze_fraction": 0.5, "head_lr": 3e-3,
              "backbone_lr": 1e-3, "batch_size": 16}
    found = table.nearest(wanted)
    assert (found.params["backbone"], found.params["unfreeze_fraction"]) == (
        "test_resnet:hub", 0.5)
    cell = [r for r in table.rows if r.params["backbone"] == "test_resnet:hub"
            and r.params["unfreeze_fraction"] == 0.5]
    assert table._distance(found.params, wanted) == min(
        table._distance(r.params, wanted) for r in cell)


def test_both_methods_replay_end_to_end_in_seconds(table: Any) -> None:
    ranking = {"order": ["test_resnet:hub"], "seconds": 5.0}
    ours = replay.replay(table, replay.AUTOML, [0, 1, 2], 300.0, 2, ranking)
    again = replay.replay(table, replay.AUTOML, [0, 1, 2], 300.0, 2, ranking)
    theirs = replay.replay(table, replay.RANDOM, [0, 1, 2], 900.0, 2, None)
    assert ours.curves == again.curves  # deterministic per seed
    for out in (ours, theirs):
        for curve in out.curves:
            assert curve and all(b[1] > a[1] for a, b in itertools.pairwise(curve))
            assert curve[-1][0] <= out.budget_s
    # The ranking's seconds come first; a trial's first result after its launch + 1 epoch.
    assert min(c[0][0] for c in ours.curves) >= 5.0 + 1.0 + 10.0
    lines = replay.report(table, [ours, theirs], 300.0, 0.01)
    assert any("ratio" in line for line in lines) and "automl" in "\n".join(lines)


def test_asha_stops_trials_in_the_replay(table: Any) -> None:
    """With ASHA some trials end after one epoch, so more trials fit the same budget; with
    FIFO every trial reports all three epochs."""
    asha = replay.simulate(table, replay.AUTOML, 0, 400.0, 2, None)
    fifo = replay.simulate(table, replay.RANDOM, 0, 400.0, 2, None)
    assert fifo.epochs >= 3 * (fifo.trials - 2)  # all but the two cut by the budget
    assert asha.trials > fifo.trials and asha.epochs < 3 * asha.trials


def test_every_variant_under_trial_replays(table: Any) -> None:
    ranking = {"order": ["test_resnet:hub"], "seconds": 5.0}
    for method in replay.VARIANTS.values():
        run = replay.simulate(table, method, 0, 200.0, 2, ranking)
        assert run.curve and run.trials >= 2, method.name


def test_a_recorded_table_loads_back_with_its_launch_gaps(tmp_path: Path, space: Path) -> None:
    events = [{"event": "start", "trial_id": "a", "time": 0.0},
              {"event": "start", "trial_id": "b", "time": 0.1},
              {"event": "end", "trial_id": "a", "time": 30.0},
              {"event": "start", "trial_id": "c", "time": 31.5},
              {"event": "end", "trial_id": "b", "time": 40.0}]
    assert record.launch_gaps(events) == {"c": 1.5}  # the first wave has none
    rows = [{"config": c, "epoch": e, "val_accuracy": 0.5 + 0.1 * e, "val_examples": 2000,
             "time_total_s": 10.0 * e, "launch_s": gap,
             "params": f'{{"backbone": "test_resnet:hub", "head_lr": {lr}}}'}
            for c, gap, lr in ((0, None, 1e-3), (1, 1.5, 1e-2)) for e in (1, 2)]
    pd.DataFrame(rows).to_csv(tmp_path / "image.csv", index=False)
    table = replay.load_table("image", tmp_path, space)
    assert [r.launch_s for r in table.rows] == [1.5, 1.5]  # the median for the first wave
    assert table.rows[1].curve == (0.6, 0.7) and table.rows[1].clock == (10.0, 20.0)
    assert table.best == 0.7 and table.nearest({"backbone": "test_resnet:hub",
                                                "head_lr": 2e-3}).params["head_lr"] == 1e-3


def test_recording_goes_round_robin_over_the_cells(space: Path) -> None:
    configs = record.sample_configs(parse.load(space), 12, seed=0)
    order = record.interleaved(list(enumerate(configs)))
    first = [(c["backbone"], c["unfreeze_fraction"]) for _, c in order[:6]]
    assert len(set(first)) == 6 and sorted(i for i, _ in order) == list(range(12))
