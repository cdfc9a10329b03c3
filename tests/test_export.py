"""Export: every format round-trips against PyTorch, files are verified, predict works on
both runtimes, and nothing read back is a pickle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from automl.errors import AutomlError
from automl.export import export_checkpoint, load, load_exported, parse_formats, predict
from automl.export import formats as formats_mod
from automl.export.context import ExportContext
from automl.tasks.image import normalize
from automl.tasks.image_files import load_image
from automl.trial.checkpoints import TrainState, save_checkpoint, save_train_state
from automl.trial.steps import setup_trial
from tests.helpers import PRE, fit, tiny_plan, tiny_tables


@pytest.fixture(scope="module")
def image_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object, list[str]]:
    """A partly frozen tiny EfficientNet trained a few epochs and exported in every format,
    checked on real prepared validation rows: (export dir, image folder, setup, classes)."""
    from tests.conftest import write_image_folder

    root = tmp_path_factory.mktemp("image_export")
    folder = write_image_folder(root / "images")
    tables, classes = tiny_tables(folder)
    # Partly frozen: FrozenBatchNorm layers must still export into a plain timm model.
    plan = tiny_plan(classes, backbone="test_efficientnet", unfreeze_fraction=0.5, epochs=1,
                     head_lr=0.03, backbone_lr=0.01)
    setup = setup_trial(plan)
    fit(setup, plan, tables, range(1, 5))
    ckpt = root / "ckpt"
    ckpt.mkdir()
    save_checkpoint(setup.model, plan, ckpt, val_accuracy=0.5, epoch=1)
    save_train_state(ckpt, setup.optimizer, TrainState())  # a pickle that must not travel
    context = ExportContext(examples=tables["val"], trial={"trial_id": "t1", "head_lr": 0.03},
                            data={"source": str(folder), "train_rows": 27, "val_rows": 9})
    out = export_checkpoint(ckpt, root / "export", context=context)
    return out, folder, setup, classes


def test_image_export_every_format_matches_pytorch(image_export: tuple) -> None:
    out, _, setup, _ = image_export
    manifest = json.loads((out / "manifest.json").read_text())
    checks = {c["name"]: c for c in manifest["checks"]}
    assert set(checks) == {"safetensors", "torchscript", "onnx"}  # no hf for images
    assert manifest["checked_on"] == "9 validation examples of the run"
    for check in checks.values():
        assert check["max_abs_diff"] < 1e-4 and check["top1_agreement"] == 1.0
        assert check["examples"] == 10  # the batch and its first row alone
    assert checks["safetensors"]["max_abs_diff"] == 0.0
    assert not (out / "train_state.pt").exists()
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "README.md",
                                      "model.torchscript.pt", "model.onnx"}

    # Each file, loaded with its own library alone, matches the trained model at a batch
    # size it was not traced with.
    model = setup.model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    plain = timm.create_model("test_efficientnet", num_classes=3)
    plain.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    assert torch.allclose(plain.eval()(x), expected, atol=1e-5)
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    assert torch.allclose(scripted(x), expected, atol=1e-5)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    assert session.get_inputs()[0].name == "pixel_values"
    assert np.allclose(session.run(None, {"pixel_values": x.numpy()})[0], expected, atol=1e-4)

    card = (out / "README.md").read_text()
    assert "test_efficientnet" in card and "| head_lr | 0.03 |" in card
    assert "27 train / 9 validation" in card and "| onnx | `model.onnx` |" in card


def test_predict_on_both_runtimes_matches_the_trained_model(image_export: tuple) -> None:
    out, folder, setup, classes = image_export
    preds = predict(out, [str(folder)], top_k=2)
    pixels = np.stack([load_image(p.input, 32, "bilinear", 1.0) for p in preds])
    with torch.no_grad():
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        probs = setup.model(normalize(batch, PRE)).softmax(-1)
    assert len(preds) == 36
    assert [p.label for p in preds] == [classes[int(i)] for i in probs.argmax(-1)]
    assert np.allclose([p.probability for p in preds], probs.max(-1).values, atol=1e-5)
    assert all(len(p.top) == 2 and p.top[0][1] >= p.top[1][1] for p in preds)
    accuracy = np.mean([p.label == Path(p.input).parent.name for p in preds])
    assert accuracy >= 0.8, accuracy

    onnx = load(out, runtime="onnx").predict_proba([str(folder)])
    torch_probs = load(out).predict_proba([str(folder)])
    assert list(onnx.columns) == classes and onnx.index.tolist() == [p.input for p in preds]
    assert np.allclose(onnx.to_numpy(), torch_probs.to_numpy(), atol=1e-4)
    assert np.allclose(onnx.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(AutomlError, match="--top-k must be at least 1"):
        load(out).predict([str(folder)], top_k=0)
    with pytest.raises(AutomlError, match="--batch-size must be at least 1"):
        load(out).predict([str(folder)], batch_size=0)


def test_tampered_truncated_or_missing_files_are_refused(image_export: tuple,
                                                         tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(image_export[0], out)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # tampered
    weights.write_bytes(bytes(data))
    with pytest.raises(AutomlError, match=r"model.safetensors does not match the export"):
        load(out)
    load(out, runtime="onnx")  # onnxruntime does not read the safetensors
    weights.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(AutomlError, match=r"model.safetensors does not match"):
        load(out)
    (out / "model.onnx").unlink()
    with pytest.raises(AutomlError, match=r"model.onnx is missing from the export"):
        load(out, runtime="onnx")
    (out / "config.json").write_text("{not json")
    with pytest.raises(AutomlError, match=r"config.json is not valid JSON"):
        load(out)
    (out / "manifest.json").unlink()
    with pytest.raises(AutomlError, match=r"manifest.json is missing"):
        load(out)
    with pytest.raises(AutomlError, match="not an export directory"):
        load_exported(tmp_path / "nothing")


def test_nothing_in_an_export_is_a_pickle_automl_reads(image_export: tuple) -> None:
    out = image_export[0]
    for path in out.rglob("*"):
        if path.is_file() and path.name != "model.torchscript.pt":  # TorchScript: for users
            head = path.read_bytes()[:4]
            assert head[:2] != b"\x80\x04", path  # pickle protocol header
            assert head != b"PK\x03\x04", path  # torch.save zip (pickle inside)


def test_a_format_beyond_tolerance_fails_and_is_not_kept(
    image_export: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = image_export[2]
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    plan = tiny_plan(["a", "b", "c"], backbone="test_efficientnet")
    save_checkpoint(setup.model, plan, ckpt, val_accuracy=0.5, epoch=1)
    real = formats_mod._torchscript

    def off_by_a_bit(*args: object) -> object:  # a graph that computes something else
        run = real(*args)  # type: ignore[arg-type]
        return lambda x: run(x) + 0.05

    monkeypatch.setattr(formats_mod, "_torchscript", off_by_a_bit)
    with pytest.raises(AutomlError, match="torchscript export differs from PyTorch"):
        export_checkpoint(ckpt, tmp_path / "bad", ["safetensors", "torchscript"])
    assert not (tmp_path / "bad").exists()  # no half export: nothing was moved into place
    assert not list(tmp_path.glob(".bad.staging-*"))
    # An earlier export at the same place is replaced whole; a folder of other files is not.
    first = export_checkpoint(ckpt, tmp_path / "again", ["safetensors", "onnx"])
    monkeypatch.undo()
    export_checkpoint(ckpt, first, ["safetensors", "torchscript"])
    assert sorted(json.loads((first / "manifest.json").read_text())["files"]) == [
        "README.md", "config.json", "model.safetensors", "model.torchscript.pt"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(AutomlError, match="exists and is not an automl export"):
        export_checkpoint(ckpt, tmp_path / "mine")


def test_format_names_are_checked(image_export: tuple, tmp_path: Path) -> None:
    assert parse_formats("onnx, safetensors") == ("safetensors", "onnx")
    with pytest.raises(AutomlError, match="unknown export format"):
        parse_formats("onnx,tflite")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    plan = tiny_plan(["a", "b", "c"], backbone="test_efficientnet")
    save_checkpoint(image_export[2].model, plan, ckpt, val_accuracy=0.5, epoch=1)
    with pytest.raises(AutomlError, match="--format hf is for single text models"):
        export_checkpoint(ckpt, tmp_path / "x", ["hf"])
    with pytest.raises(AutomlError, match="not a trial checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "out")


def test_loading_an_export_does_not_import_ray(image_export: tuple) -> None:
    out, folder = image_export[0], image_export[1]
    code = ("import sys, automl; m = automl.load(sys.argv[1], runtime='onnx'); "
            "m.predict([sys.argv[2]]); automl.load(sys.argv[1]).predict_proba([sys.argv[2]]); "
            "print(sorted(k for k in sys.modules if k == 'ray' or k.startswith('ray.')))")
    done = subprocess.run([sys.executable, "-c", code, str(out), str(folder)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_real_pretrained_model_exports_in_every_format(image_folder: Path, tmp_path: Path
                                                       ) -> None:
    """EfficientNet-Lite0 with its packaged ImageNet weights: the real architecture (SAME
    padding, depthwise convs) survives TorchScript and ONNX."""
    from automl.backbones.timm_backbone import timm_data_config

    pre = timm_data_config("tf_efficientnet_lite0", 64)
    tables, classes = tiny_tables(image_folder, pre)
    plan = tiny_plan(classes, backbone="tf_efficientnet_lite0", weights="package",
                     preprocessing=pre, unfreeze_fraction=0.0, head_lr=0.01)
    setup = setup_trial(plan)
    fit(setup, plan, tables, (1,))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_checkpoint(setup.model, plan, ckpt, val_accuracy=0.5, epoch=1)
    out = export_checkpoint(ckpt, tmp_path / "export", context=ExportContext(tables["val"]))
    checks = json.loads((out / "manifest.json").read_text())["checks"]
    assert [c["name"] for c in checks] == ["safetensors", "torchscript", "onnx"]
    assert all(c["max_abs_diff"] < 1e-3 and c["top1_agreement"] == 1.0 for c in checks)
    on_torch = load(out).predict_proba([str(image_folder)])
    on_onnx = load(out, runtime="onnx").predict_proba([str(image_folder)])
    assert (on_torch.idxmax(axis=1) == on_onnx.idxmax(axis=1)).all()
    assert np.abs(on_torch.to_numpy() - on_onnx.to_numpy()).max() < 1e-4


def test_readme_onnx_snippet_predicts_what_automl_predicts(image_export: tuple,
                                                           tmp_path: Path) -> None:
    """The README's few lines (onnxruntime, NumPy, Pillow; no automl) give automl's labels."""
    out, folder = image_export[0], image_export[1]
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index("```python\nimport json, numpy as np, onnxruntime") + len("```python\n")
    snippet = readme[start:readme.index("```", start)]
    files = sorted(str(p) for p in folder.rglob("*.png"))[::6]
    expected = [p.label for p in predict(out, files)]
    got = []
    for file in files:
        code = snippet.replace("export/", f"{out}/").replace("photo.png", file)
        script = tmp_path / "snippet.py"
        script.write_text("import sys\nsys.modules['automl'] = None  # not importable\n" + code)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-1500:]
        got.append(done.stdout.strip())
    assert got == expected
