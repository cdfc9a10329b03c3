"""Export a trial's checkpoint to portable artifacts (safetensors + config.json), load, predict."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from automl import storage
from automl.errors import AutomlError
from automl.paths import local_path, resolve
from automl.plan import PLAN_FILE, WEIGHTS_FILE, TrialPlan
from automl.tasks import get_task

EXPORT_FORMAT = "automl-export/1"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Prediction:
    """One input's predicted class."""

    input: str
    label: str
    probability: float


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """Write `model.safetensors` (loads strictly into the plain backbone + head) and
    `config.json` (backbone, weights source, classes, preprocessing, hyperparameters)."""
    src, out = local_path(checkpoint_dir, "checkpoint"), local_path(out_dir, "export dir")
    if not (src / PLAN_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
        raise AutomlError(f"{str(src)!r} is not a trial checkpoint (no {PLAN_FILE}/{WEIGHTS_FILE})")
    saved = json.loads((src / PLAN_FILE).read_text())
    plan = TrialPlan.from_dict(saved)
    model = _plain_model(plan, src)
    state = load_file(str(src / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Frozen BatchNorms (FrozenBatchNorm2d) carry no num_batches_tracked; nothing else may differ.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise AutomlError(f"checkpoint does not match its plan: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE))
    metrics = {k: saved[k] for k in ("epoch", "val_accuracy", "val_loss") if k in saved}
    config = {
        "format": EXPORT_FORMAT,
        "task": plan.task,
        "library": get_task(plan.task).library,
        "backbone": plan.backbone,
        "weights_source": plan.weights,
        "num_classes": plan.num_classes,
        "class_names": list(plan.classes),
        "preprocessing": plan.preprocessing,
        "hyperparameters": plan.to_dict(),
        "metrics": metrics,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    _copy_extras(src, out)
    return out


def _copy_extras(src: Path, out: Path) -> None:
    """Tokenizer and model-config files saved beside text checkpoints travel with the export."""
    for extra in src.iterdir():
        if extra.name not in (PLAN_FILE, WEIGHTS_FILE):
            target = out / extra.name
            if extra.is_dir():
                shutil.copytree(extra, target, dirs_exist_ok=True)
            else:
                shutil.copy2(extra, target)


def _plain_model(plan: TrialPlan, directory: Path) -> nn.Module:
    """The architecture with a fresh head and no pretrained download (weights come next),
    rebuilt from what the checkpoint / export directory holds."""
    model, _ = get_task(plan.task).build_model(plan, saved=directory)
    return model


def load_exported(export_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The exported model (eval mode, strictly loaded) and its config."""
    root = local_path(export_dir, "export dir")
    path = root / CONFIG_FILE
    if not path.is_file():
        raise AutomlError(f"{str(root)!r} is not an export directory (no {CONFIG_FILE}); "
                          "create one with `automl export RUN_DIR --out DIR`")
    config = json.loads(path.read_text())
    if config.get("format") != EXPORT_FORMAT:
        raise AutomlError(f"{path} has format {config.get('format')!r}, expected {EXPORT_FORMAT}")
    plan = TrialPlan.from_dict(config["hyperparameters"])
    model = _plain_model(plan, root)
    model.load_state_dict(load_file(str(root / WEIGHTS_FILE)), strict=True)
    return model.eval(), config


def predict(export_dir: str | Path, inputs: list[str], batch_size: int = 32) -> list[Prediction]:
    """Predict a class for every input: image files / folders, or (text) strings. The export
    may be a folder or a storage URI (downloaded to a temporary folder first)."""
    with storage.local_copy(resolve(export_dir, "export dir")) as root:
        return _predict(root, inputs, batch_size)


def _predict(root: Path, inputs: list[str], batch_size: int) -> list[Prediction]:
    model, config = load_exported(root)
    plan = TrialPlan.from_dict(config["hyperparameters"])
    task = get_task(plan.task)
    out: list[Prediction] = []
    names = config["class_names"]
    with torch.inference_mode():
        for labels, model_inputs in task.predict_batches(inputs, root, plan, batch_size):
            probs = task.forward(model, model_inputs).float().softmax(-1)
            top = probs.max(-1)
            out += [Prediction(name, names[int(i)], float(p))
                    for name, i, p in zip(labels, top.indices, top.values, strict=True)]
    return out
