"""An ensemble exports as one graph (issue 29): its members' probabilities averaged, each image
member fed its own view of one shared input; `automl.load`/`predict` and the parity checks
work on it unchanged; members' files are verified like any export's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from automl.errors import AutomlError
from automl.export import export_checkpoint, load, predict
from automl.export.context import ExportContext
from automl.export.ensemble import ImageView, shared_preprocessing, stage_ensemble
from automl.tasks import get_task
from automl.trial.checkpoints import TrainState, save_checkpoint, save_train_state
from automl.trial.steps import setup_trial
from tests.helpers import PRE, tiny_plan, tiny_tables

# Member b differs from the shared input (member a's) in size, crop, interpolation and
# normalization: its view is cut, resized and renormalized in the graph.
PRE_B = {"image_size": 40, "interpolation": "bicubic", "crop_pct": 0.875,
         "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _checkpoint(plan: object, folder: Path) -> torch.nn.Module:
    setup = setup_trial(plan)  # type: ignore[arg-type]
    folder.mkdir()
    save_checkpoint(setup.model, plan, folder, val_accuracy=0.5, epoch=1)  # type: ignore[arg-type]
    save_train_state(folder, setup.optimizer, TrainState())  # a pickle that must not travel
    return setup.model.eval()


@pytest.fixture(scope="module")
def image_ensemble(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from tests.conftest import write_image_folder

    root = tmp_path_factory.mktemp("ensemble")
    folder = write_image_folder(root / "images")
    tables, classes = tiny_tables(folder)
    plan_a = tiny_plan(classes, backbone="test_resnet", seed=1)
    plan_b = tiny_plan(classes, backbone="test_efficientnet", preprocessing=PRE_B, seed=2)
    a, b = _checkpoint(plan_a, root / "a"), _checkpoint(plan_b, root / "b")
    stage_ensemble([("a", 0.6, str(root / "a")), ("b", 0.4, str(root / "b"))],
                   root / "staged", val_accuracy=0.7)
    out = export_checkpoint(root / "staged", root / "export",
                            context=ExportContext(examples=tables["val"]))
    return out, folder, tables, plan_a, a, b


def test_the_graph_is_the_weighted_mean_of_each_member_on_its_own_view(image_ensemble: tuple
                                                                       ) -> None:
    out, _, tables, plan_a, a, b = image_ensemble
    x, _ = get_task("image").collate(tables["val"], plan_a, torch.device("cpu"))
    # b keeps 40/45 of its frame's short side; the shared input keeps all of its 32 px.
    box = round(32 * (40 / 45))
    offset = (32 - box) // 2
    view = F.interpolate(x[:, :, offset:offset + box, offset:offset + box], size=(40, 40),
                         mode="bicubic", align_corners=False, antialias=True)
    mean, std = (torch.tensor(PRE[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    view = (view * std + mean - 0.5) / 0.5
    with torch.no_grad():
        expected = 0.6 * a(x).softmax(-1) + 0.4 * b(view).softmax(-1)
        got = load(out).model(x).softmax(-1)  # type: ignore[misc]
    assert torch.allclose(got, expected, atol=1e-5)
    shared = ImageView(a, PRE, PRE)  # a member that shares the input sees it untouched
    with torch.no_grad():
        assert torch.equal(shared(x), a(x))


def test_every_format_is_checked_and_predict_works_on_both_runtimes(image_ensemble: tuple
                                                                    ) -> None:
    out, folder, *_ = image_ensemble
    manifest = json.loads((out / "manifest.json").read_text())
    checks = {c["name"]: c for c in manifest["checks"]}
    assert set(checks) == {"safetensors", "torchscript", "onnx"}
    assert manifest["checked_on"].endswith("validation examples of the run")
    assert all(c["max_abs_diff"] < 1e-4 and c["top1_agreement"] == 1.0 for c in checks.values())
    assert checks["safetensors"]["path"] == "members"
    config = json.loads((out / "config.json").read_text())
    assert [m["name"] for m in config["ensemble"]] == ["a", "b"]
    assert config["preprocessing"] == PRE  # the heaviest member's: the README snippet holds
    assert config["backbone"] == "ensemble of 2: test_efficientnet, test_resnet"
    assert config["metrics"]["val_accuracy"] == 0.7
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"members/0-a/model.safetensors", "members/1-b/plan.json", "ensemble.json"} <= files
    assert not any(f.endswith("train_state.pt") for f in files)
    assert "Ensemble" in (out / "README.md").read_text()
    torch_preds = load(out).predict_proba([str(folder)])
    onnx_preds = load(out, runtime="onnx").predict_proba([str(folder)])
    assert np.allclose(torch_preds.to_numpy(), onnx_preds.to_numpy(), atol=1e-4)
    assert np.allclose(torch_preds.sum(axis=1), 1.0, atol=1e-5)


def test_a_changed_member_is_refused_and_onnx_needs_no_member(image_ensemble: tuple,
                                                              tmp_path: Path) -> None:
    import shutil

    out, folder, *_ = image_ensemble
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    weights = copy / "members" / "1-b" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(AutomlError, match=r"1-b/model\.safetensors does not match"):
        load(copy)
    assert len(predict(copy, [str(folder)], runtime="onnx")) > 0  # the graph has the weights


def test_members_that_cannot_share_one_input_are_refused() -> None:
    a = tiny_plan(["x", "y"])
    with pytest.raises(AutomlError, match="one set of classes"):
        shared_preprocessing([a, tiny_plan(["x", "z"])], [0.5, 0.5])
    assert shared_preprocessing([a, tiny_plan(["x", "y"], preprocessing=PRE_B)],
                                [0.3, 0.7]) == PRE_B
    text = {"task": "text", "preprocessing": {"source": "bert"}, "max_length": 64}
    with pytest.raises(AutomlError, match="share one tokenizer and max_length"):
        shared_preprocessing([tiny_plan(["x", "y"], **text),
                              tiny_plan(["x", "y"], **{**text, "max_length": 32})], [0.5, 0.5])


def test_a_text_ensemble_exports_without_hf_and_predicts(text_csv: Path, tiny_bert: Path,
                                                         tmp_path: Path) -> None:
    from tests.test_text import _plan, _prepared

    tables, classes, pre = _prepared(text_csv, tiny_bert)
    for name, pooling in (("m", "mean"), ("c", "cls")):
        _checkpoint(_plan(tiny_bert, classes, pre, pooling=pooling), tmp_path / name)
    stage_ensemble([("m", 0.5, str(tmp_path / "m")), ("c", 0.5, str(tmp_path / "c"))],
                   tmp_path / "staged")
    with pytest.raises(AutomlError, match="an ensemble exports as safetensors"):
        export_checkpoint(tmp_path / "staged", tmp_path / "hf-only", formats=["hf"])
    out = export_checkpoint(tmp_path / "staged", tmp_path / "export",
                            context=ExportContext(tables["val"], data={"text_column": "text"}))
    checks = json.loads((out / "manifest.json").read_text())["checks"]
    assert {c["name"] for c in checks} == {"safetensors", "torchscript", "onnx"}
    texts = ["the film was great and superb", "great " * 40]
    on_torch, on_onnx = predict(out, texts), predict(out, texts, runtime="onnx")
    assert [p.label for p in on_torch] == [p.label for p in on_onnx]
    assert np.allclose([p.probability for p in on_torch], [p.probability for p in on_onnx],
                       atol=1e-4)
