"""`first_trials`: configurations a search tries first (a known-good recipe, a portfolio),
validated against the space, written back to RUN/space.yaml, enqueued in the searcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automl.config import parse
from automl.config.space_file import describe, write_space
from automl.errors import ConfigError
from automl.search.tune import make_searcher

SPACE: dict[str, Any] = {
    "backbones": ["test_resnet", {"name": "test_resnet", "weights": "scratch"}],
    "space": {"unfreeze_fraction": {"choices": [0.0, 0.5, 1.0]},
              "head_lr": {"low": 1e-4, "high": 1e-1, "log": True}, "batch_size": 16},
    "first_trials": [{"backbone": "test_resnet:hub", "unfreeze_fraction": 0.5,
                      "head_lr": 3e-3}, {"backbone": "test_resnet:scratch"}],
}


def test_first_trials_are_tried_first_in_order(tmp_path: Path) -> None:
    cfg = parse.from_dict(SPACE)
    assert cfg.first_trials[0]["head_lr"] == 3e-3
    searcher = make_searcher(cfg, list(cfg.first_trials))
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first is not None and second is not None
    assert (first["backbone"], first["unfreeze_fraction"], first["head_lr"]) == (
        "test_resnet:hub", 0.5, 3e-3)
    assert second["backbone"] == "test_resnet:scratch"  # the rest sampled
    assert any(line.startswith("first trials (2): {backbone=test_resnet:hub")
               for line in describe(cfg))
    written = write_space(cfg, tmp_path / "space.yaml", "re-run")
    assert parse.load(written).first_trials == cfg.first_trials


@pytest.mark.parametrize(("point", "message"), [
    ({"backbone": "resnet50:hub"}, r"first_trials\[0\]\.backbone: 'resnet50:hub' is not one"),
    ({"head_lr": 0.5}, r"first_trials\[0\]\.head_lr: 0\.5 is outside the space \(0\.0001"),
    ({"unfreeze_fraction": 0.25}, r"unfreeze_fraction: 0\.25 is outside the space \(\{0\.0, 0\.5"),
    ({"batch_size": 32}, r"batch_size: 32 is outside the space \(fixed at 16\)"),
    ({"head_lrr": 0.01}, r"head_lrr: not a parameter of this space; did you mean 'head_lr'"),
])
def test_a_first_trial_outside_the_space_is_a_config_error(point: dict[str, Any],
                                                           message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse.from_dict({**SPACE, "first_trials": [point]})
    with pytest.raises(ConfigError, match="first_trials: must be a list of mappings"):
        parse.from_dict({**SPACE, "first_trials": {"backbone": "test_resnet:hub"}})
