"""Temperature scaling: it lowers the calibration error of an over-confident model, and the
fitted temperature travels in every export format and runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch
from safetensors.torch import load_file

from automl.export import export_checkpoint, load
from automl.export.calibrate import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
)
from automl.export.context import ExportContext
from automl.export.score import assess_checkpoint
from automl.trial.checkpoints import save_checkpoint
from automl.trial.steps import setup_trial
from tests.conftest import write_image_folder
from tests.helpers import tiny_plan, tiny_tables

CALIBRATION = {"temperature": 2.0, "val_ece": 0.2, "val_ece_calibrated": 0.05,
               "test_ece": 0.18, "test_ece_calibrated": 0.06}


def _overconfident(n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a 4-class model that is right 70 % of the time and ≈ 99 % sure each time."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=generator)
    wrong = (labels + torch.randint(1, 4, (n,), generator=generator)) % 4
    right = torch.rand(n, generator=generator) < 0.7
    predicted = torch.where(right, labels, wrong)
    logits = torch.randn(n, 4, generator=generator)
    logits[torch.arange(n), predicted] += 6.0
    return logits, labels


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model() -> None:
    val, test = _overconfident(seed=0), _overconfident(seed=1)
    temperature = fit_temperature(*val)
    assert temperature > 2  # it was too sure: the logits shrink
    found = calibrate(val, test)
    assert found.temperature == pytest.approx(temperature)
    assert found.test_ece is not None and found.test_ece > 0.25  # ≈ 0.99 sure, 0.70 right
    assert found.test_ece_calibrated is not None
    assert found.test_ece_calibrated < found.test_ece / 3
    assert found.val_ece_calibrated < found.val_ece
    # Accuracy is untouched; an under-confident model gets T < 1.
    assert ((val[0] / temperature).argmax(1) == val[0].argmax(1)).all()
    assert fit_temperature(val[0] / 20, val[1]) < 1
    assert "on test" in found.describe() and "→" in found.describe()


def test_ece_by_hand() -> None:
    # Two examples at confidence 0.9 (one right) and two at ≈ 0.6 (both right).
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]))
    labels = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(logits, labels) == pytest.approx(
        0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, dict]:
    root = tmp_path_factory.mktemp("calibrated")
    tables, classes = tiny_tables(write_image_folder(root / "images"))
    plan = tiny_plan(classes, backbone="test_efficientnet", epochs=1)
    setup = setup_trial(plan)
    (root / "ckpt").mkdir()
    save_checkpoint(setup.model, plan, root / "ckpt", val_accuracy=0.5, epoch=1)
    return root, setup, tables


def test_every_format_and_runtime_carries_the_temperature(checkpoint: tuple) -> None:
    root, setup, tables = checkpoint
    out = export_checkpoint(root / "ckpt", root / "export",
                            context=ExportContext(tables["val"], calibration=CALIBRATION))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {c["name"] for c in manifest["checks"]} == {"safetensors", "torchscript", "onnx"}
    assert all(c["max_abs_diff"] < 1e-4 for c in manifest["checks"])
    model = setup.model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x) / 2.0
    plain = timm.create_model("test_efficientnet", num_classes=3)
    plain.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), expected, atol=1e-5)
        assert torch.allclose(torch.jit.load(str(out / "model.torchscript.pt"))(x), expected,
                              atol=1e-5)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    onnx_logits = session.run(None, {"pixel_values": x.numpy()})[0]
    assert np.allclose(onnx_logits, expected.numpy(), atol=1e-4)
    images = [str(p) for p in sorted((root / "images").rglob("*.png"))[:5]]
    on_torch, on_onnx = load(out).predict_proba(images), load(out, "onnx").predict_proba(images)
    assert np.allclose(on_torch.to_numpy(), on_onnx.to_numpy(), atol=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["calibration"]["temperature"] == 2.0
    card = (out / "README.md").read_text()
    assert "divided by a temperature of 2" in card and "0.180 → 0.060" in card


def test_an_uncalibrated_export_says_so(checkpoint: tuple) -> None:
    root, _, tables = checkpoint
    out = export_checkpoint(root / "ckpt", root / "plain", formats=["safetensors"],
                            context=ExportContext(tables["val"]))
    assert "not calibrated" in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["calibration"] is None


def test_the_selected_checkpoint_is_scored_and_calibrated_in_one_pass(checkpoint: tuple
                                                                       ) -> None:
    root, _, tables = checkpoint
    for split in ("val", "test"):
        (root / split).mkdir(exist_ok=True)
        pq.write_table(tables["val"], root / split / "000000.parquet")
    found = assess_checkpoint(str(root / "ckpt"), str(root / "val"), str(root / "test"))
    assert found.test is not None and found.test.examples == tables["val"].num_rows
    assert found.calibration is not None and found.calibration.temperature > 0
    # Same rows in both: the test ECE after calibration is the validation one.
    assert found.calibration.test_ece_calibrated == pytest.approx(
        found.calibration.val_ece_calibrated)
    none = assess_checkpoint(str(root / "ckpt"), str(root / "val"), None, calibrate=False)
    assert none.test is None and none.calibration is None


def test_folding_needs_a_classifier_of_the_right_width() -> None:
    with pytest.raises(ValueError, match="no Linear layer with 7 outputs"):
        fold_temperature(torch.nn.Sequential(torch.nn.Linear(4, 3)), 2.0, 7)


def test_a_text_export_carries_it_in_every_format(text_csv: Path, tiny_bert: Path,
                                                  tmp_path: Path) -> None:
    """softmax(log p / T) of the uncalibrated export is what the calibrated one returns, on
    both runtimes; the Hugging Face folder passed its check against the folded model."""
    from tests.test_text import _plan, _prepared

    tables, classes, pre = _prepared(text_csv, tiny_bert)
    plan = _plan(tiny_bert, classes, pre, epochs=1)
    setup = setup_trial(plan)
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(setup.model, plan, tmp_path / "ckpt", val_accuracy=1.0, epoch=1)
    plain = export_checkpoint(tmp_path / "ckpt", tmp_path / "plain", formats=["safetensors"],
                              context=ExportContext(tables["val"]))
    out = export_checkpoint(tmp_path / "ckpt", tmp_path / "export",
                            context=ExportContext(tables["val"], calibration=CALIBRATION))
    checks = json.loads((out / "manifest.json").read_text())["checks"]
    assert {c["name"] for c in checks} == {"safetensors", "torchscript", "onnx", "hf"}
    assert all(c["max_abs_diff"] < 1e-4 for c in checks)
    texts = ["the film was great and superb", "the plot was awful and dull"]
    before = torch.tensor(load(plain).predict_proba(texts).to_numpy())
    expected = torch.softmax(before.log() / 2.0, dim=1).numpy()
    for runtime in ("torch", "onnx"):
        assert np.allclose(load(out, runtime).predict_proba(texts).to_numpy(), expected,
                           atol=1e-4)
