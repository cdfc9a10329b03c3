"""Per-trial costs measured on the worker for the board: peak memory and inference latency."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

from automl.tasks.base import Task

LATENCY_RUNS = 5


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this worker: CUDA memory allocated on a GPU, else the process's
    peak resident set (which includes the Python runtime and libraries)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


@torch.inference_mode()
def latency_ms(model: nn.Module, task: Task, inputs: Any, device: torch.device) -> float:
    """Median milliseconds for one sample through the model (the first of a collated
    validation batch, after one warm-up run), on the trial's device and thread count: what
    serving one request costs."""
    sample = _first_row(inputs)
    was_training = model.training
    model.eval()
    times = []
    for _ in range(LATENCY_RUNS + 1):
        start = time.perf_counter()
        task.forward(model, sample)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    model.train(was_training)
    return statistics.median(times[1:]) * 1000


def _first_row(inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return {k: v[:1] for k, v in inputs.items()}
    return inputs[:1]
