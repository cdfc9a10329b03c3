"""Test helpers: a prepared payload and plan for tiny timm models, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.data import prepare_images
from automl.plan import TrialPlan

PRE = {"image_size": 32, "interpolation": "bilinear", "crop_pct": 1.0,
       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def tiny_payload(folder: Path) -> tuple[dict[str, Any], list[str]]:
    prepared = prepare_images(folder, [PRE], val_fraction=0.25, seed=0)
    payload = {"train": prepared.train, "val": prepared.val,
               "train_labels": prepared.train_labels, "val_labels": prepared.val_labels}
    return payload, prepared.classes


def tiny_plan(classes: list[str], **changes: Any) -> TrialPlan:
    values: dict[str, Any] = {
        "task": "image", "backbone": "test_resnet", "weights": "scratch",
        "classes": tuple(classes), "preprocessing": PRE, "unfreeze_fraction": 1.0,
        "head_lr": 3e-3, "backbone_lr": 1e-3, "layer_decay": 1.0, "weight_decay": 0.0,
        "batch_size": 8, "epochs": 2, "seed": 0,
    }
    values.update(changes)
    return TrialPlan(**values)
