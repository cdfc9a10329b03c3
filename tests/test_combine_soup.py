"""Weight averaging and which trials may be averaged (no Ray)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.combine.soup import average_state_dicts, soup_group
from tests.helpers import tiny_plan


def tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def test_averaging_two_checkpoints_gives_the_mean_of_their_weights_and_a_working_model() -> None:
    a, b = tiny_model(0), tiny_model(1)
    a.train()(torch.randn(16, 4))  # moves a's BatchNorm statistics and its counter
    soup = average_state_dicts([a.state_dict(), b.state_dict()])
    for key, value in soup.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a.state_dict()[key] + b.state_dict()[key]) / 2)
            assert value.dtype == a.state_dict()[key].dtype
    assert soup["1.num_batches_tracked"] == a.state_dict()["1.num_batches_tracked"]
    model = tiny_model(2)
    model.load_state_dict(soup)
    out = model.eval()(torch.randn(5, 4))
    assert out.shape == (5, 3) and torch.isfinite(out).all()


def test_weighted_average_and_bad_weights() -> None:
    a, b = tiny_model(0).state_dict(), tiny_model(1).state_dict()
    soup = average_state_dicts([a, b], weights=[0.75, 0.25])
    assert torch.allclose(soup["0.weight"], 0.75 * a["0.weight"] + 0.25 * b["0.weight"])
    with pytest.raises(ValueError, match="sum to 1"):
        average_state_dicts([a, b], weights=[0.5, 0.6])


def test_incompatible_weights_are_refused() -> None:
    a = tiny_model(0).state_dict()
    wider = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Linear(6, 5)).state_dict()
    with pytest.raises(ValueError, match="shapes differ"):
        average_state_dicts([a, wider])
    other = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).state_dict()
    with pytest.raises(ValueError, match="other parameters"):
        average_state_dicts([a, other])


def test_soup_groups_follow_the_shared_starting_point() -> None:
    base = tiny_plan(["a", "b"], weights="package")
    assert soup_group(base) == soup_group(tiny_plan(["a", "b"], weights="package",
                                                    head_lr=1e-2, unfreeze_fraction=0.5))
    assert soup_group(base) != soup_group(tiny_plan(["a", "b"], weights="package", seed=1))
    assert soup_group(base) != soup_group(tiny_plan(["a", "b", "c"], weights="package"))
    assert soup_group(base) != soup_group(tiny_plan(["a", "b"], weights="package",
                                                    backbone="test_vit"))
    assert soup_group(tiny_plan(["a", "b"])) is None  # from scratch: nothing shared
    text = tiny_plan(["a", "b"], task="text", weights="package")
    assert soup_group(text) != soup_group(tiny_plan(["a", "b"], task="text",
                                                    weights="package", pooling="cls"))
