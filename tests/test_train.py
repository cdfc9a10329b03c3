from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automl.errors import TrialFailed
from automl.train import evaluate, setup_trial, train_epoch
from tests.helpers import tiny_payload, tiny_plan

CPU = torch.device("cpu")


def _run(folder: Path, **changes: object) -> tuple[float, float]:
    payload, classes = tiny_payload(folder)
    plan = tiny_plan(classes, **changes)
    setup = setup_trial(plan, payload)
    loss = 0.0
    for epoch in (1, 2):
        loss = train_epoch(setup, plan, epoch, CPU)
    correct, count, _ = evaluate(setup, plan, CPU)
    return loss, correct / count


def test_same_plan_and_seed_gives_same_result(image_folder: Path) -> None:
    assert _run(image_folder) == _run(image_folder)
    assert _run(image_folder) != _run(image_folder, seed=1)


def test_linear_probe_changes_only_the_head(image_folder: Path) -> None:
    payload, classes = tiny_payload(image_folder)
    plan = tiny_plan(classes, unfreeze_fraction=0.0, backbone_lr=None)
    setup = setup_trial(plan, payload)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    train_epoch(setup, plan, 1, CPU)
    after = setup.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    assert setup.unfreeze_depth == 0


def test_bf16_autocast_path_runs_on_cpu(image_folder: Path) -> None:
    _, accuracy = _run(image_folder, precision="bf16")
    assert 0.0 <= accuracy <= 1.0


def test_nan_loss_fails_the_trial_with_a_reason(image_folder: Path) -> None:
    with pytest.raises(TrialFailed, match="loss became"):
        _run(image_folder, head_lr=1e12, backbone_lr=1e12, grad_clip=None)


def test_hflip_off_changes_the_training_data(image_folder: Path) -> None:
    assert _run(image_folder, hflip=False) != _run(image_folder)
