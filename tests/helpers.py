"""Test helpers: prepared tables and plans for tiny models, and the trial loop without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from automl.config.schema import DataConfig
from automl.data.batches import local_batches
from automl.data.shards import prepare_local
from automl.tasks import get_task
from automl.trial.classification import Evaluation
from automl.trial.plan import TrialPlan
from automl.trial.steps import TrialSetup, evaluate, train_epoch

PRE = {"image_size": 32, "interpolation": "bilinear", "crop_pct": 1.0,
       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
CPU = torch.device("cpu")


def tiny_tables(folder: Path, pre: dict[str, Any] = PRE, val_fraction: float = 0.25
                ) -> tuple[dict[str, pa.Table], list[str]]:
    """An image folder scanned and prepared in-process: ({train, val} tables, classes)."""
    data = DataConfig(path=str(folder), val_fraction=val_fraction)
    task = get_task("image")
    catalog = task.scan(data)
    return prepare_local(task, catalog, data, pre), list(catalog.classes)


def tiny_plan(classes: list[str], **changes: Any) -> TrialPlan:
    values: dict[str, Any] = {
        "task": "image", "backbone": "test_resnet", "weights": "scratch",
        "classes": tuple(classes), "preprocessing": PRE, "unfreeze_fraction": 1.0,
        "head_lr": 3e-3, "backbone_lr": 1e-3, "layer_decay": 1.0, "weight_decay": 0.0,
        "batch_size": 8, "epochs": 2, "seed": 0,
    }
    values.update(changes)
    return TrialPlan(**values)


def fit(setup: TrialSetup, plan: TrialPlan, tables: dict[str, pa.Table],
        epochs: range | tuple[int, ...] = (1, 2)) -> tuple[float, float]:
    """Train the given epochs on the in-memory tables; (last loss, validation accuracy)."""
    loss = 0.0
    for epoch in epochs:
        batches = local_batches(tables["train"], plan.batch_size, seed=plan.seed + epoch)
        loss = train_epoch(setup, plan, epoch, CPU, batches).loss
    counts = evaluate(setup, plan, CPU, local_batches(tables["val"], 64)).tolist()
    return loss, Evaluation.from_counts(counts, plan.num_classes).score("accuracy")


def build_model(task: str, name: str, weights: str, num_classes: int) -> tuple[Any, Any]:
    """A task's model for a backbone, as a trial builds it (text: source resolved as the
    preflight does)."""
    pre: dict[str, Any] = PRE
    if task == "text":
        from automl.backbones.hf_backbone import resolve_source

        pre = {"source": resolve_source(name, weights)}
    plan = tiny_plan([str(i) for i in range(num_classes)], task=task, backbone=name,
                     weights=weights, preprocessing=pre)
    return get_task(task).build_model(plan)
