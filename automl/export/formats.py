"""Export formats beyond safetensors, each written and then checked against PyTorch.

A format is written from the eval-mode model and one batch of real validation inputs, then
loaded back the way its users load it (TorchScript: `torch.jit.load`; ONNX: onnxruntime;
Hugging Face: transformers' Auto classes) and run on that batch and on its first row alone
(a different batch size, and for text a different sequence length): the largest logit
difference and the top-1 agreement go into the export's manifest, and an export beyond
`TOLERANCE` fails.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl.errors import AutomlError
from automl.tasks import Task

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
HF_DIR = "huggingface"
ONNX_OPSET = 18
TOLERANCE = 1e-3
"""Largest allowed |Δ logit| relative to max(1, largest |logit|): float32 kernels reorder sums
(≈1e-6 seen), a wrong graph is off by far more."""


@dataclass(frozen=True)
class ExportedFormat:
    """What `export_format` wrote and how close it came to PyTorch."""

    name: str
    path: str
    """File or folder, relative to the export directory."""
    max_abs_diff: float
    top1_agreement: float
    examples: int
    seconds: float


def positional(inputs: Any) -> tuple[torch.Tensor, ...]:
    """A task's model inputs (one tensor or a dict) as a tuple in call order."""
    return tuple(inputs.values()) if isinstance(inputs, dict) else (inputs,)


class _Positional(nn.Module):
    """The model called with positional tensors (what tracing and ONNX need)."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        super().__init__()
        self.model, self.task = model, task
        self.names = [name for name, _ in task.export_inputs]

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs: Any = tensors[0] if len(tensors) == 1 else dict(zip(self.names, tensors,
                                                                    strict=True))
        return self.task.forward(self.model, inputs)


def _first_row(inputs: Any) -> Any:
    """The first example alone; text is cut to its own length (unpadded)."""
    if not isinstance(inputs, dict):
        return inputs[:1]
    length = max(1, int(inputs["attention_mask"][0].sum()))
    return {k: v[:1, :length] for k, v in inputs.items()}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporters print progress and tracer warnings, and tracing a transformers model reads
    properties that log; the export prints one line per format itself."""
    hf_logging = sys.modules.get("transformers.utils.logging")
    level = hf_logging.get_verbosity() if hf_logging else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if hf_logging:
            hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            if hf_logging and level is not None:
                hf_logging.set_verbosity(level)


def _torchscript(model: nn.Module, task: Task, inputs: Any, out: Path
                 ) -> Callable[[Any], torch.Tensor]:
    with _quiet():
        traced = torch.jit.trace(_Positional(model, task).eval(), positional(inputs))
        traced.save(str(out / TORCHSCRIPT_FILE))
        loaded = torch.jit.load(str(out / TORCHSCRIPT_FILE))
    return lambda x: loaded(*positional(x))


def _onnx(model: nn.Module, task: Task, inputs: Any, out: Path
          ) -> Callable[[Any], torch.Tensor]:
    import onnxruntime

    dims = {axis: torch.export.Dim("batch" if axis == 0 else f"dim{axis}")
            for _, axes in task.export_inputs for axis in axes}
    shapes = tuple({axis: dims[axis] for axis in axes} for _, axes in task.export_inputs)
    names = [name for name, _ in task.export_inputs]
    with _quiet():
        # One entry per forward() parameter: the *tensors tuple.
        torch.onnx.export(_Positional(model, task).eval(), positional(inputs),
                          str(out / ONNX_FILE), dynamo=True, input_names=names,
                          output_names=["logits"], dynamic_shapes=(shapes,),
                          opset_version=ONNX_OPSET, external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(str(out / ONNX_FILE),
                                           providers=["CPUExecutionProvider"])

    def run(x: Any) -> torch.Tensor:
        feed = {n: t.numpy() for n, t in zip(names, positional(x), strict=True)}
        return torch.from_numpy(session.run(None, feed)[0])

    return run


def _library(model: nn.Module, task: Task, inputs: Any, out: Path, plan: Any, extras: Path
             ) -> Callable[[Any], torch.Tensor]:
    task.save_library_format(model, out / HF_DIR, plan, extras)
    return lambda x: task.run_library_format(out / HF_DIR, x)


def _summary(exc: Exception) -> str:
    """The informative line of an exporter's error (torch.onnx wraps the cause in advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("<class ")), None)
    return cause or f"{type(exc).__name__}: {lines[0] if lines else ''}"


FILES = {"torchscript": TORCHSCRIPT_FILE, "onnx": ONNX_FILE, "hf": HF_DIR}


def export_format(name: str, model: nn.Module, task: Task, inputs: Any, out: Path,
                  plan: Any, extras: Path) -> ExportedFormat:
    """Write format `name` into `out` and check it on `inputs` and their first row."""
    started = time.time()
    try:
        if name == "torchscript":
            run = _torchscript(model, task, inputs, out)
        elif name == "onnx":
            run = _onnx(model, task, inputs, out)
        else:
            run = _library(model, task, inputs, out, plan, extras)
    except Exception as exc:  # exporters raise anything; name the format and the cause
        raise AutomlError(f"{name} export failed: {_summary(exc)}") from exc
    return check(name, FILES[name], model, task, inputs, run, started)


def check(name: str, path: str, model: nn.Module, task: Task, inputs: Any,
          run: Callable[[Any], torch.Tensor], started: float) -> ExportedFormat:
    """Compare `run` (an exported model) with `model` on `inputs` and on their first row;
    AutomlError beyond `TOLERANCE`."""
    worst, scale, agree, count = 0.0, 1.0, 0, 0
    with torch.inference_mode():
        for batch in (inputs, _first_row(inputs)):
            expected = task.forward(model, batch).float()
            got = run(batch).float()
            worst = max(worst, float((got - expected).abs().max()))
            agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
            count += len(expected)
            scale = max(scale, float(expected.abs().max()))
    result = ExportedFormat(name, path, worst, agree / count, count, time.time() - started)
    if worst > TOLERANCE * scale:
        raise AutomlError(f"{name} export differs from PyTorch by up to {worst:.3g} in a logit "
                          f"(allowed {TOLERANCE:g} × {scale:.3g}); it was not kept")
    return result
