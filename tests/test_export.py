from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from automl.errors import AutomlError
from automl.export import export_checkpoint, load_exported, predict
from automl.train import save_checkpoint, setup_trial, train_epoch
from tests.helpers import tiny_payload, tiny_plan


def test_export_round_trip_and_predict(image_folder: Path, tmp_path: Path) -> None:
    payload, classes = tiny_payload(image_folder)
    # Partly frozen: FrozenBatchNorm layers must still export into a plain timm model.
    plan = tiny_plan(classes, backbone="test_efficientnet", unfreeze_fraction=0.5, epochs=1)
    setup = setup_trial(plan, payload)
    train_epoch(setup, plan, 1, torch.device("cpu"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_checkpoint(setup.model, plan, ckpt, val_accuracy=0.5, epoch=1)
    out = export_checkpoint(ckpt, tmp_path / "export")

    plain = timm.create_model("test_efficientnet", num_classes=3)
    plain.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    model, config = load_exported(out)
    assert config["class_names"] == classes and config["backbone"] == "test_efficientnet"
    assert config["hyperparameters"]["unfreeze_fraction"] == 0.5
    setup.model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), setup.model(x), atol=1e-5)

    preds = predict(out, [str(image_folder / "left")])
    assert len(preds) == 12 and {p.label for p in preds} <= set(classes)
    assert all(0.0 <= p.probability <= 1.0 for p in preds)


def test_export_rejects_non_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(AutomlError, match="not a trial checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "out")
    with pytest.raises(AutomlError, match="not an export directory"):
        load_exported(tmp_path)
