"""Weight averaging and which trials may be averaged (no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _checkpoint(root: Path, name: str, classes: list[str], nudge: float, **changes: Any
                ) -> str:
    from automl.trial.checkpoints import save_checkpoint
    from automl.trial.steps import setup_trial

    plan = tiny_plan(classes, backbone="test_efficientnet", epochs=1, weights="package",
                     **changes)
    setup = setup_trial(plan)
    with torch.no_grad():
        for p in setup.model.parameters():
            p.add_(nudge)
        # As if the top block trained: its last BatchNorm's statistics moved too.
        means = [b for n, b in setup.model.named_buffers() if n.endswith("running_mean")]
        means[-1].add_(nudge)
    (root / name).mkdir()
    save_checkpoint(setup.model, plan, root / name, val_accuracy=0.5, epoch=1)
    return str(root / name)


def test_a_soup_of_two_checkpoints_is_their_mean_and_refuses_other_groups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    import automl.backbones.timm_backbone as timm_backbone
    from automl.combine.soup import load_soup, recompute_batchnorm
    from automl.trial.plan import WEIGHTS_FILE

    # test_efficientnet has no packaged weights: its random init stands in for them.
    real = timm_backbone.create_timm_model
    monkeypatch.setattr(timm_backbone, "create_timm_model",
                        lambda name, weights, *args: real(name, "scratch", *args))
    classes = ["a", "b"]
    first = _checkpoint(tmp_path, "one", classes, 0.0)
    second = _checkpoint(tmp_path, "two", classes, 0.1, head_lr=1e-2)
    plan, soup, varied = load_soup([first, second])
    assert plan.head_lr == 3e-3  # the first member's plan
    a, b = (load_file(str(Path(c) / WEIGHTS_FILE)) for c in (first, second))
    for key, value in soup.state_dict().items():
        if key in a and value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-6), key
    # Only the BatchNorms a member trained are re-estimated; the others keep their statistics.
    norms = {n: m for n, m in soup.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    kept = {n: m.running_mean.clone() for n, m in norms.items() if n not in varied}
    assert kept and varied and varied <= set(norms)
    assert recompute_batchnorm(soup, [torch.randn(4, 3, 32, 32)], lambda m, x: m(x),
                               only=varied)
    assert all(torch.equal(norms[n].running_mean, v) for n, v in kept.items())
    assert torch.isfinite(soup(torch.randn(2, 3, 32, 32))).all()
    other_seed = _checkpoint(tmp_path, "three", classes, 0.0, seed=1)
    with pytest.raises(ValueError, match="not averageable"):
        load_soup([first, other_seed])
