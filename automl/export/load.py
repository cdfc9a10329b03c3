"""Load an export and predict with it, on PyTorch or onnxruntime. Imports no Ray.

Everything read back is JSON, safetensors or ONNX (and tokenizer files), and each file is
checked against the SHA-256 the manifest recorded at export time, so a missing, truncated or
tampered file is refused with its name before anything is built from it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from automl import paths, storage
from automl.errors import AutomlError
from automl.export.ensemble import MEMBERS_DIR
from automl.export.formats import FILES, ONNX_FILE, positional
from automl.export.writer import CONFIG_FILE, EXPORT_FORMAT, MANIFEST_FILE, load_saved, sha256
from automl.tasks import get_task
from automl.trial.plan import WEIGHTS_FILE, TrialPlan

RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    """One input's predicted class, and its `top` k classes with probabilities."""

    input: str
    label: str
    probability: float
    top: tuple[tuple[str, float], ...] = ()


class ExportedModel:
    """An exported classifier: `predict` / `predict_proba` on image files and folders, or
    texts (and table files of texts)."""

    def __init__(self, root: Path, runtime: str = "torch") -> None:
        if runtime not in RUNTIMES:
            raise AutomlError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        self.root, self.runtime = root, runtime
        manifest = _read_json(root / MANIFEST_FILE, root)
        self.config = _read_json(root / CONFIG_FILE, root)
        if self.config.get("format") != EXPORT_FORMAT or manifest.get("format") != EXPORT_FORMAT:
            raise AutomlError(f"{root / CONFIG_FILE} has format {self.config.get('format')!r}, "
                              f"expected {EXPORT_FORMAT}; export the run again with this "
                              "version: automl export RUN_DIR")
        skip = {FILES[f] for f in FILES if not (runtime == "onnx" and f == "onnx")}
        if runtime == "onnx" and ONNX_FILE not in manifest["files"]:
            raise AutomlError(f"{root} has no {ONNX_FILE}; export with --format onnx")
        if runtime == "onnx":  # the graph holds the weights
            skip |= {WEIGHTS_FILE, MEMBERS_DIR}
        _verify(root, manifest["files"], skip)
        self.plan = TrialPlan.from_dict(self.config["hyperparameters"])
        self.task = get_task(self.plan.task)
        self.classes: list[str] = list(self.config["class_names"])
        self.model: nn.Module | None = None
        self._session: Any = None
        if runtime == "torch":
            self.model = load_saved(root, self.plan)
        else:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(str(root / ONNX_FILE),
                                                         providers=["CPUExecutionProvider"])

    def _logits(self, inputs: Any) -> torch.Tensor:
        if self.model is not None:
            return self.task.forward(self.model, inputs)
        names = [n for n, _ in self.task.export_inputs]
        feed = {n: t.numpy() for n, t in zip(names, positional(inputs), strict=True)}
        return torch.from_numpy(self._session.run(None, feed)[0])

    def _batches(self, inputs: Sequence[str], batch_size: int
                 ) -> list[tuple[list[str], torch.Tensor]]:
        if batch_size < 1:
            raise AutomlError(f"--batch-size must be at least 1, got {batch_size}")
        items = self.task.read_inputs(list(inputs), self.config.get("data") or {})
        if not items:
            raise AutomlError("nothing to predict: no inputs (or empty folders/tables)")
        out = []
        with torch.inference_mode():
            for names, batch in self.task.predict_batches(items, self.root, self.plan,
                                                          batch_size):
                out.append((names, self._logits(batch).float().softmax(-1)))
        return out

    def predict_proba(self, inputs: Sequence[str], batch_size: int = 32) -> pd.DataFrame:
        """Class probabilities: one row per input (folders and tables expanded), one column
        per class."""
        names: list[str] = []
        rows: list[torch.Tensor] = []
        for batch_names, probs in self._batches(inputs, batch_size):
            names += batch_names
            rows.append(probs)
        return pd.DataFrame(torch.cat(rows).numpy(), index=pd.Index(names, name="input"),
                            columns=self.classes)

    def predict(self, inputs: Sequence[str], top_k: int = 1, batch_size: int = 32
                ) -> list[Prediction]:
        """The most likely class of every input, with its `top_k` classes."""
        if top_k < 1:
            raise AutomlError(f"--top-k must be at least 1, got {top_k}")
        k = min(top_k, len(self.classes))
        out = []
        for names, probs in self._batches(inputs, batch_size):
            best = probs.topk(k, dim=-1)
            for name, values, indices in zip(names, best.values, best.indices, strict=True):
                top = tuple((self.classes[int(i)], float(v)) for v, i in zip(values, indices,
                                                                             strict=True))
                out.append(Prediction(name, top[0][0], top[0][1], top))
        return out


def load(export_dir: str | Path, runtime: str = "torch") -> ExportedModel:
    """An export (folder or storage URI) ready to predict with PyTorch or onnxruntime."""
    location = paths.resolve(export_dir, "export dir")
    if paths.is_remote(location):
        root = storage.download(location, Path(tempfile.mkdtemp(prefix="automl-export-")) / "x")
    else:
        root = Path(location)
    if not (root / MANIFEST_FILE).is_file() and not (root / CONFIG_FILE).is_file():
        raise AutomlError(f"{location!r} is not an export directory (no {MANIFEST_FILE}); "
                          "create one with `automl export RUN_DIR --out DIR`")
    return ExportedModel(root, runtime)


def load_exported(export_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The exported PyTorch model (eval mode, strictly loaded) and its config."""
    exported = load(export_dir)
    assert exported.model is not None
    return exported.model, exported.config


def predict(export_dir: str | Path, inputs: Sequence[str], batch_size: int = 32,
            top_k: int = 1, runtime: str = "torch") -> list[Prediction]:
    """Predict a class for every input: image files / folders, or texts / tables of texts."""
    return load(export_dir, runtime).predict(inputs, top_k, batch_size)


def _read_json(path: Path, root: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AutomlError(f"{path} is missing: {root} is not a complete export; export the "
                          "run again with `automl export RUN_DIR`")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AutomlError(f"{path} is not valid JSON ({exc}); the export is damaged, export "
                          "the run again") from None
    if not isinstance(value, dict):
        raise AutomlError(f"{path} is not a JSON object; the export is damaged")
    return value


def _verify(root: Path, files: dict[str, dict[str, Any]], skip: set[str]) -> None:
    """Every manifest file this runtime reads exists and has its recorded SHA-256."""
    for rel, expected in files.items():
        if rel.split("/")[0] in skip:
            continue
        path = root / rel
        if not path.is_file():
            raise AutomlError(f"{path} is missing from the export (listed in {MANIFEST_FILE})")
        if sha256(path) != expected.get("sha256"):
            raise AutomlError(f"{path} does not match the export's {MANIFEST_FILE} (SHA-256 "
                              "differs: changed or truncated after export); export again")
    # Folders the loaders read whole (tokenizer files): nothing may be added to them either.
    for path in root.glob("*/**/*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel.split("/")[0] not in skip and rel not in files:
            raise AutomlError(f"{path} is not part of the export (not in {MANIFEST_FILE}); "
                              "remove it or export again")
