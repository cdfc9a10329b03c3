"""Write an export: the trial's model in every requested format, checked, hashed, described.

An export directory holds `model.safetensors` + `config.json` (always), the task's extras
(text: tokenizer + encoder config in `hf/`), the requested formats (`model.torchscript.pt`,
`model.onnx`, `huggingface/`), a `README.md` model card and `manifest.json`: the SHA-256 and
size of every file, and each format's check against PyTorch. Nothing in it is a pickle that
automl reads back: weights are safetensors, settings JSON.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from safetensors.torch import save_file
from torch import nn

from automl.errors import AutomlError
from automl.export.calibrate import fold_temperature
from automl.export.card import model_card
from automl.export.context import ExportContext
from automl.export.ensemble import (
    ENSEMBLE_FILE,
    MEMBERS_DIR,
    WeightedEnsemble,
    is_ensemble,
    load_ensemble,
    read_spec,
    save_ensemble,
)
from automl.export.formats import TOLERANCE, ExportedFormat, check, export_format
from automl.export.saved import load_weights, rebuild
from automl.ownership import EXPORT_MANIFEST, check_export_target, remove_files
from automl.paths import local_path
from automl.tasks import Task, get_task
from automl.trial.checkpoints import TRAIN_STATE_FILE
from automl.trial.plan import PLAN_FILE, WEIGHTS_FILE, TrialPlan
from automl.trial.predictions import PREDICTIONS_FILE

EXPORT_FORMAT = "automl-export/2"
CONFIG_FILE = "config.json"
MANIFEST_FILE = EXPORT_MANIFEST
CARD_FILE = "README.md"
ALL_FORMATS = ("safetensors", "torchscript", "onnx", "hf")
CHECK_ROWS = 16
"""Validation examples each format is checked on."""


def parse_formats(spec: str | Sequence[str]) -> tuple[str, ...]:
    """`"safetensors,onnx"` or a list → known format names (safetensors always included)."""
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    unknown = [n for n in names if n and n not in ALL_FORMATS]
    if unknown:
        raise AutomlError(f"unknown export format(s) {', '.join(unknown)}; choose from "
                          f"{','.join(ALL_FORMATS)} (e.g. --format safetensors,onnx)")
    return ("safetensors", *[n for n in ALL_FORMATS[1:] if n in names])


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path,
                      formats: Sequence[str] = ALL_FORMATS,
                      context: ExportContext | None = None,
                      log: Callable[[str], Any] | None = None) -> Path:
    """Export a trial checkpoint into `out_dir` in `formats` (`hf` only for text models; it is
    skipped when asked for all formats, an error when asked for alone on an image model).
    Every format is checked on real validation inputs when `context.examples` has them.

    The export is written to a staging folder and moved into place only when every format
    passed its check: `out_dir` never holds half an export. `out_dir` must be new, empty
    or an earlier automl export (`ownership.check_export_target`), checked before any work."""
    src, out = local_path(checkpoint_dir, "checkpoint"), local_path(out_dir, "export dir")
    weights = src / (ENSEMBLE_FILE if is_ensemble(src) else WEIGHTS_FILE)
    if not (src / PLAN_FILE).is_file() or not weights.is_file():
        raise AutomlError(f"{str(src)!r} is not a trial checkpoint (no {PLAN_FILE}/{WEIGHTS_FILE})")
    check_export_target(str(out))
    wanted = parse_formats(formats)
    # A name of this process's own, made here (mkdir refuses an existing one); not mkdtemp,
    # whose 0700 mode the export would keep.
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}-{secrets.token_hex(3)}")
    staging.mkdir()
    try:
        _write(src, staging, wanted, context or ExportContext(), log)
        if out.exists():
            # Checked again right before: only the files of the earlier export go.
            owned = check_export_target(str(out))
            replaced = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            out.rename(replaced)
            staging.rename(out)
            remove_files(str(replaced), owned)
        else:
            staging.rename(out)
    finally:
        if staging.exists():  # a failed export: the folder automl made for it goes
            shutil.rmtree(staging)
    return out


def _write(src: Path, out: Path, formats: tuple[str, ...], context: ExportContext,
           log: Callable[[str], Any] | None) -> None:
    saved = json.loads((src / PLAN_FILE).read_text())
    plan = TrialPlan.from_dict(saved)
    task = get_task(plan.task)
    ensemble = is_ensemble(src)
    spec = read_spec(src) if ensemble else None
    wanted = _applicable(formats, task, explicit=set(formats) != set(ALL_FORMATS),
                         ensemble=ensemble)
    model = load_saved(src, plan, allow_missing_bn_counters=True)
    if context.calibration and not ensemble:  # the formats are made from, and checked on, this
        fold_temperature(model, float(context.calibration["temperature"]), plan.num_classes)
    if isinstance(model, WeightedEnsemble):
        save_ensemble(model, src, out)
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(out / WEIGHTS_FILE))
    _copy_extras(src, out)
    inputs, checked_on = _check_inputs(task, plan, context.examples)
    checks = [_check_safetensors(model, task, plan, out, inputs)]
    for name in wanted[1:]:
        checks.append(export_format(name, model, task, inputs, out, plan, extras=out))
        if log:
            log(f"  {name}: {checks[-1].path} (max |Δ logit| {checks[-1].max_abs_diff:.2g}, "
                f"top-1 agreement {checks[-1].top1_agreement:.0%}, {checks[-1].seconds:.1f} s)")
    if context.refit:  # the refit checkpoint's own score is on data it trained on
        trial = context.trial
        metrics = {"val_accuracy": trial.get("val_accuracy"), "val_loss": trial.get("val_loss"),
                   "epoch": trial.get("best_epoch"), "note": "the trial's, before the refit"}
    else:
        metrics = {k: saved[k] for k in ("epoch", "val_accuracy", "val_loss") if k in saved}
    config = {
        "format": EXPORT_FORMAT, "task": plan.task, "library": task.library,
        "backbone": _members_line(src, spec) if spec else plan.backbone,
        "weights_source": plan.weights,
        "num_classes": plan.num_classes, "class_names": list(plan.classes),
        "preprocessing": plan.preprocessing, "inputs": [n for n, _ in task.export_inputs],
        "data": context.data, "hyperparameters": plan.to_dict(), "metrics": metrics,
        "refit": context.refit, "calibration": context.calibration,
        "formats": [c.name for c in checks],
        "ensemble": ([{k: e[k] for k in ("name", "weight", "dir")} for e in spec["members"]]
                     if spec else None),
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    sizes = {c.name: size_of(out / c.path) for c in checks}
    (out / CARD_FILE).write_text(model_card(config, checks, context, checked_on, sizes))
    manifest = {
        "format": EXPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tolerance": {"max_abs_logit_diff": TOLERANCE, "relative_to": "max(1, max |logit|)"},
        "checked_on": checked_on, "checks": [asdict(c) for c in checks],
        "files": file_hashes(out),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def _members_line(src: Path, spec: dict[str, Any]) -> str:
    """`ensemble of 3: tf_efficientnet_lite0 ×2, tf_efficientnet_lite1` for the card."""
    names = [TrialPlan.load(src / m["dir"]).backbone for m in spec["members"]]
    kinds = ", ".join(f"{n} ×{names.count(n)}" if names.count(n) > 1 else n
                      for n in sorted(set(names)))
    return f"ensemble of {len(names)}: {kinds}"


def load_saved(directory: Path, plan: TrialPlan, allow_missing_bn_counters: bool = False
               ) -> nn.Module:
    """The model a checkpoint or export folder holds, weights loaded, eval mode: one trial's
    (the plan's architecture) or an ensemble's (`ensemble.json`, its members)."""
    if is_ensemble(directory):
        return load_ensemble(directory, allow_missing_bn_counters)
    model = rebuild(plan, directory)
    load_weights(model, directory / WEIGHTS_FILE, allow_missing_bn_counters)
    return model


def _applicable(formats: tuple[str, ...], task: Task, explicit: bool, ensemble: bool
                ) -> tuple[str, ...]:
    if "hf" in formats and (task.library_format != "hf" or ensemble):
        if explicit:
            what = "an ensemble" if ensemble else f"a {task.name} model"
            raise AutomlError(f"--format hf is for single text models; {what} exports "
                              "as safetensors, torchscript and onnx")
        formats = tuple(f for f in formats if f != "hf")
    return formats


def _copy_extras(src: Path, out: Path) -> None:
    """What the task saved beside the weights (text: tokenizer + encoder config); never the
    training state (optimizer, RNGs), which is a pickle and no use to a deployed model, nor
    the trial's validation predictions (an ensemble's members are written by
    `save_ensemble`)."""
    for extra in src.iterdir():
        if extra.name in (PLAN_FILE, WEIGHTS_FILE, TRAIN_STATE_FILE, PREDICTIONS_FILE,
                          ENSEMBLE_FILE, MEMBERS_DIR):
            continue
        if extra.is_dir():
            shutil.copytree(extra, out / extra.name, dirs_exist_ok=True)
        else:
            shutil.copy2(extra, out / extra.name)


def _check_inputs(task: Task, plan: TrialPlan, examples: pa.Table | None) -> tuple[Any, str]:
    """A batch of real validation inputs (≥ 2 rows, so the batch axis stays dynamic), or
    the task's synthetic example repeated when the run's prepared data is not at hand."""
    if examples is not None and examples.num_rows >= 2:
        rows = examples.slice(0, CHECK_ROWS)
        inputs, _ = task.collate(rows, plan, torch.device("cpu"))
        return inputs, f"{rows.num_rows} validation examples of the run"
    example = task.example_input(plan)
    if isinstance(example, dict):
        return {k: v.repeat(2, 1) for k, v in example.items()}, "a synthetic example input"
    return example.repeat(2, 1, 1, 1), "a synthetic example input"


def _check_safetensors(model: nn.Module, task: Task, plan: TrialPlan, out: Path, inputs: Any
                       ) -> ExportedFormat:
    """Reload the written safetensors into a fresh model: the round trip must be exact."""
    started = time.time()
    fresh = load_saved(out, plan)
    where = MEMBERS_DIR if is_ensemble(out) else WEIGHTS_FILE
    result = check("safetensors", where, model, task, inputs,
                   lambda x: task.forward(fresh, x), started)
    if result.max_abs_diff > 0:
        raise AutomlError(f"{out / where} does not reproduce the trained model "
                          f"(max |Δ logit| {result.max_abs_diff:.3g})")
    return result


def file_hashes(root: Path) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under `root` except the manifest, by relative path."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST_FILE:
            out[rel] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    return out


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def sha256(path: Path) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
