"""The batches a training epoch reads: an in-memory table's seeded, sharded batches, and
`EpochBatches`, which turns passes over a split into epochs of full passes or fixed steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa


def local_batches(table: pa.Table, batch_size: int, seed: int | None = None,
                  shard: tuple[int, int] = (0, 1)) -> Iterator[pa.Table]:
    """Batches of an in-memory table: seeded shuffle, this rank's equal share."""
    order = np.arange(table.num_rows)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(table.num_rows)
    rank, world = shard
    order = order[rank::world][:table.num_rows // world]
    for start in range(0, len(order), batch_size):
        yield table.take(order[start:start + batch_size])


class EpochBatches:
    """Training batches epoch after epoch: a full pass each, or — with `steps` — that many
    batches, continuing where the last epoch stopped and starting new passes as needed.

    A batch of one row is dropped here (BatchNorm cannot train on it), so `steps` counts
    optimizer steps, equal on every DDP rank. `position()` / `resume()` let a restarted trial
    continue the same stream (pass number and batches already taken from it)."""

    def __init__(self, make_pass: Callable[[int], Iterator[pa.Table]], steps: int | None = None
                 ) -> None:
        self.make_pass, self.steps = make_pass, steps
        self.passes = 0
        self._taken_in_pass = 0
        self._current: Iterator[pa.Table] | None = None

    def position(self) -> dict[str, int]:
        """Where the stream stands, for a checkpoint."""
        return {"passes": self.passes, "taken": self._taken_in_pass}

    def resume(self, position: dict[str, int]) -> None:
        """Continue from `position()` of an earlier run of the same stream: re-reads the
        current pass up to where it stopped (the passes are seeded, so the batches match)."""
        self.passes, self._taken_in_pass = position.get("passes", 0), 0
        taken = position.get("taken", 0)
        if self.steps is None or not taken:
            return
        self._current = iter(self.make_pass(self.passes))
        while self._taken_in_pass < taken and self._next() is not None:
            pass

    def _next(self) -> pa.Table | None:
        """The current pass's next trainable batch, or None at its end."""
        assert self._current is not None
        for batch in self._current:
            if batch.num_rows > 1:
                self._taken_in_pass += 1
                return batch
        self._current = None
        return None

    def epoch(self) -> Iterator[pa.Table]:
        """The next epoch's batches."""
        if self.steps is None:
            self.passes += 1
            self._taken_in_pass = 0
            yield from (b for b in self.make_pass(self.passes) if b.num_rows > 1)
            return
        taken, empty_pass = 0, False  # True only while a freshly started pass gave nothing
        while taken < self.steps:
            if self._current is None:
                self.passes += 1
                self._current, self._taken_in_pass = iter(self.make_pass(self.passes)), 0
                empty_pass = True
            batch = self._next()
            if batch is None:
                if empty_pass:
                    return
                continue
            empty_pass = False
            taken += 1
            yield batch
