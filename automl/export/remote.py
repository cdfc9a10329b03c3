"""Writing an export where it belongs: in this process (`write_export`) or in a Ray task
(`export_on_ray`). A light module on purpose: a Ray worker that runs the task imports this
and the exporters, not the search's machinery (Ray Train, Tune), which would add seconds to
every worker's start."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from automl import paths, storage
from automl.errors import AutomlError
from automl.export.context import ExportContext
from automl.export.writer import export_checkpoint
from automl.ownership import check_export_target, remove_files


def write_export(location: str, out: str, formats: Sequence[str], context: ExportContext,
                 log: Callable[[str], Any]) -> str:
    """Export the checkpoint at `location` (a path or URI) to `out` in this process."""
    target = paths.resolve(out, "--out")
    with storage.local_copy(location) as checkpoint:
        if not paths.is_remote(target):
            return str(export_checkpoint(checkpoint, target, formats, context, log))
        check_export_target(target)
        with tempfile.TemporaryDirectory(prefix="automl-export-") as tmp:
            staged = Path(tmp) / "export"
            export_checkpoint(checkpoint, staged, formats, context, log)
            remove_files(target, check_export_target(target))  # only the earlier export's files
            storage.upload(staged, target)
    return target


def export_on_ray(location: str, out: str, formats: Sequence[str], context: ExportContext,
                  log: Callable[[str], Any]) -> str:
    """`write_export` as a Ray task: conversion and checks (ONNX's peak memory) run in a
    worker, not in the driver. An export to a local folder runs on the driver's node, where
    that folder is; one to storage (`s3://…`) runs wherever the cluster has room. The
    per-format lines print when it ends; its error is raised here as one `AutomlError`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    target = paths.resolve(out, "--out")
    options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
    if not paths.is_remote(target):
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(_export_task).options(**options)
    lines, error = ray.get(task.remote(location, target, tuple(formats), context))
    for line in lines:
        log(line)
    if error is not None:
        raise AutomlError(error)
    return target


def _export_task(location: str, out: str, formats: tuple[str, ...], context: ExportContext
                 ) -> tuple[list[str], str | None]:
    """Ray task body of `export_on_ray`: the log lines, and the error as one line (a Ray task
    error would carry the worker's traceback)."""
    lines: list[str] = []
    try:
        write_export(location, out, formats, context, lines.append)
    except Exception as exc:  # exporters raise anything; the driver reports it in one line
        return lines, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return lines, None
