"""The model card (`automl.export.card`): what the export's README.md tells its reader."""

from __future__ import annotations

from typing import Any

from automl.export.card import model_card
from automl.export.context import ExportContext
from automl.export.formats import ExportedFormat

CHECKS = [ExportedFormat("safetensors", "model.safetensors", 0.0, 1.0, 16, 0.1),
          ExportedFormat("onnx", "model.onnx", 3e-6, 1.0, 16, 0.4)]


def _config(**changes: Any) -> dict[str, Any]:
    return {"class_names": ["cat", "dog"], "metrics": {"val_accuracy": 0.875},
            "backbone": "efficientnet_lite0", "task": "image", "library": "timm",
            "weights_source": "package", "preprocessing": {"image_size": 224},
            "formats": ["safetensors", "onnx"], **changes}


def test_a_run_export_names_the_trial_data_search_and_every_check() -> None:
    context = ExportContext(
        trial={"trial_id": "t1", "head_lr": 0.003, "val_accuracy": 0.875, "error": "x"},
        data={"source": "/data/pets", "train_rows": 800, "val_rows": 200},
        search={"space": "space.yaml", "run_dir": "runs/a", "outcome": "8 trials: 6 finished"})
    card = model_card(_config(), CHECKS, context, "16 validation examples of the run",
                      {"safetensors": 2 * 2**20, "onnx": 3 * 2**20})
    assert card.startswith("# efficientnet_lite0 — image classifier (2 classes)")
    assert "validation accuracy **0.8750**" in card and "`cat`, `dog`" in card
    assert "| trial_id | t1 |" in card and "| head_lr | 0.003 |" in card
    assert "| error |" not in card  # only the card's fields, not the whole board row
    assert "- examples: 800 train / 200 validation" in card
    assert "- trials: 8 trials: 6 finished" in card
    assert "| onnx | `model.onnx` | 3.0 MiB | 3e-06 | 100% |" in card
    assert "**Refit**" not in card and "transformers alone" not in card


def test_a_bare_checkpoint_gets_a_shorter_card_and_a_refit_says_so() -> None:
    bare = model_card(_config(metrics={}), CHECKS[:1], ExportContext(), "a synthetic input", {})
    assert "## The trial" not in bare and "## Data" not in bare and "**0." not in bare
    refit = model_card(_config(), CHECKS[:1], ExportContext(refit={"examples": 1000, "epochs": 2}),
                       "x", {})
    assert "**Refit**" in refit and "(1000 examples) for 2 epoch(s)" in refit


def test_a_text_export_with_the_hf_format_shows_how_to_load_it_without_automl() -> None:
    card = model_card(_config(task="text", formats=["safetensors", "hf"]), CHECKS[:1],
                      ExportContext(), "x", {})
    assert "AutoModelForSequenceClassification.from_pretrained('huggingface'" in card


def test_a_trial_scored_on_the_test_split_says_so_first() -> None:
    trial = {"trial_id": "t1", "val_accuracy": 0.875, "val_se": 0.0165,
             "test_accuracy": 0.85, "test_se": 0.0113}
    card = model_card(_config(), CHECKS, ExportContext(trial=trial), "x", {})
    assert ("On the run's test split, which no trial, ranking or selection saw: accuracy "
            "**0.8500 ± 0.0113** (validation − test: +0.0250).") in card
    assert "| test_accuracy | 0.85 |" in card
    assert "test split" not in model_card(_config(), CHECKS, ExportContext(
        trial={"trial_id": "t1", "val_accuracy": 0.875, "test_accuracy": float("nan")}), "x", {})
