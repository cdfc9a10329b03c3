"""Decoding beside the step: a trial's batches go through `Task.host_batch` (decode, augment,
tokenize) in worker processes while the device trains on earlier ones.

With `workers` = 0 (a CPU trial holding one CPU, as on a laptop) the host work runs inline,
in order. With more, a process pool keeps `2 × workers` batches in flight and yields them in
order; each batch carries its own seed, so the stream is the same either way (tested).
Processes, not threads: the transforms draw from the global Python/NumPy/torch generators,
which the trial's own thread (dropout) also uses.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import pyarrow as pa
import torch

from automl.tasks import Task, get_task
from automl.trial.plan import TrialPlan


def decode_workers(cpus_per_worker: float) -> int:
    """Decode processes for a worker holding `cpus_per_worker` CPUs: all but the one the
    training step uses (0 below two CPUs: decoding then runs inline)."""
    return max(0, int(cpus_per_worker) - 1)


class Decoder:
    """Host-side batch preparation for one trial, inline or in a process pool."""

    def __init__(self, workers: int = 0, task: Task | None = None) -> None:
        self.workers = workers
        self.task = task
        """Inline only: the task whose `host_batch` runs (default: the plan's)."""
        self._pool: ProcessPoolExecutor | None = None

    def batches(self, plan: TrialPlan, items: Iterable[tuple[pa.Table, int | None]]
                ) -> Iterator[tuple[Any, torch.Tensor, int | None]]:
        """(host inputs, labels, seed) of each (prepared rows, augmentation seed or None) of
        `plan`'s trial, in order."""
        if self.workers == 0:
            task = self.task or get_task(plan.task)
            for batch, seed in items:
                host, labels = task.host_batch(batch, plan, seed)
                yield host, labels, seed
            return
        pool = self._start()
        pending: deque[Future[Any]] = deque()
        raw = plan.to_dict()
        for batch, seed in items:
            pending.append(pool.submit(_host_batch, raw, batch, seed))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of a process running Ray's and torch's threads can deadlock.
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker)
        return self._pool

    def close(self) -> None:
        """Stop the pool (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _init_worker() -> None:
    torch.set_num_threads(1)  # one core per decode process


def _host_batch(plan: dict[str, Any], batch: pa.Table, seed: int | None
                ) -> tuple[Any, torch.Tensor, int | None]:
    """In a decode process: the task's host half of `collate` for one batch."""
    trial_plan = TrialPlan.from_dict(plan)
    host, labels = get_task(trial_plan.task).host_batch(batch, trial_plan, seed)
    return host, labels, seed
