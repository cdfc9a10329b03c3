from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from automl.checkpoints import save_checkpoint
from automl.errors import AutomlError
from automl.export import export_checkpoint, load_exported, predict
from automl.tasks.image import normalize
from automl.tasks.image_files import load_image
from automl.train import setup_trial
from tests.helpers import PRE, fit, tiny_plan, tiny_tables


def test_export_round_trip_and_predict(image_folder: Path, tmp_path: Path) -> None:
    tables, classes = tiny_tables(image_folder)
    # Partly frozen: FrozenBatchNorm layers must still export into a plain timm model.
    plan = tiny_plan(classes, backbone="test_efficientnet", unfreeze_fraction=0.5, epochs=1,
                     head_lr=0.03, backbone_lr=0.01)
    setup = setup_trial(plan)
    fit(setup, plan, tables, range(1, 5))
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

    # Predictions from the export files equal the in-memory model's, image by image, and the
    # trained model is right on most images (an untrained one is at chance, 1/3).
    preds = predict(out, [str(image_folder)])
    pixels = np.stack([load_image(p.input, 32, "bilinear", 1.0) for p in preds])
    with torch.no_grad():
        probs = setup.model(normalize(torch.from_numpy(pixels), PRE)).softmax(-1)
    assert len(preds) == 36
    assert [p.label for p in preds] == [classes[int(i)] for i in probs.argmax(-1)]
    assert np.allclose([p.probability for p in preds], probs.max(-1).values, atol=1e-5)
    accuracy = np.mean([p.label == Path(p.input).parent.name for p in preds])
    assert accuracy >= 0.8, accuracy


def test_export_rejects_non_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(AutomlError, match="not a trial checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "out")
    with pytest.raises(AutomlError, match="not an export directory"):
        load_exported(tmp_path)
