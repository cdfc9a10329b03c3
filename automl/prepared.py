"""Prepare once, stream many: the data of a search as Parquet shards, made by Ray Data jobs.

1. The driver streams the task's source rows (file locations or texts, never pixels) into
   small Parquet parts, one folder per split.
2. A Ray Data job per preprocessing variant shuffles those rows, decodes / tokenizes them on
   every CPU of the cluster and writes the prepared shards (`key`, `label`, model columns).
3. A manifest written last marks a variant complete. Folders are named by a fingerprint of
   the content (files, sizes, mtimes, labels, split settings) and of the variant, so a second
   search on the same data finds them and skips preparation.

Trials read the shards back as Ray Datasets (see `load_datasets`); the driver only ever holds
file listings, labels and counts.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from automl.catalog import SPLIT_NAMES, UNUSED, Catalog, fingerprint
from automl.errors import DataError
from automl.tasks import Task, get_task

if TYPE_CHECKING:
    from automl.config import DataConfig

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS_PER_PART = 250
"""Source rows per Parquet part: each part is one Ray Data block, i.e. one unit of work."""


@dataclass(frozen=True)
class PreparedVariant:
    """The prepared shards of one preprocessing variant."""

    key: str
    directory: str
    """Holds `train/` and `val/` Parquet shards and the manifest."""
    columns: tuple[str, ...]
    """The columns a trial reads (label and model inputs)."""
    train_rows: int
    val_rows: int
    skipped: int
    skipped_examples: tuple[str, ...]
    seconds: float
    """Time the preparation took when it ran (cached variants keep the original figure)."""
    cached: bool = False

    def split_dir(self, split: str) -> str:
        """The shard folder of `train` or `val`."""
        return f"{self.directory}/{split}"


@dataclass(frozen=True)
class PreparedData:
    """Every variant a search needs, and which backbone uses which."""

    classes: tuple[str, ...]
    variants: dict[str, PreparedVariant]
    variant_of: dict[str, str]
    """Backbone label → variant key."""

    def summary(self, source: str, dropped: int) -> str:
        """One line for the user: classes, sizes, skipped items, preparation time or cache."""
        first = next(iter(self.variants.values()))
        notes = []
        if first.skipped:
            notes.append(f"{first.skipped} unreadable item(s) skipped (e.g. "
                         f"{first.skipped_examples[0]})")
        if dropped:
            notes.append(f"{dropped} row(s) without text or label skipped")
        cached = sum(v.cached for v in self.variants.values())
        spent = sum(v.seconds for v in self.variants.values() if not v.cached)
        notes.append(f"{len(self.variants)} prepared variant(s): "
                     f"{len(self.variants) - cached} prepared in {spent:.1f} s, {cached} cached")
        return (f"Data: {source}: {len(self.classes)} classes, {first.train_rows} train / "
                f"{first.val_rows} val; " + "; ".join(notes))


def prepare(task: Task, catalog: Catalog, data: DataConfig,
            preprocessing: dict[str, dict[str, Any]], cache_root: Path, seed: int = 0
            ) -> PreparedData:
    """Prepare (or find in the cache) every variant the backbones need; needs Ray running."""
    base = cache_root / catalog.fingerprint
    variant_of, wanted = {}, {}
    for label, pre in preprocessing.items():
        variant = task.variant(pre)
        key = fingerprint(task.name, variant, FORMAT_VERSION)
        variant_of[label], wanted[key] = key, variant
    variants = {}
    for key, variant in wanted.items():
        found = _cached(base / key)
        if found is None:
            source = _write_source(task, catalog, data, base / "source")
            found = _run_job(task, catalog, source, variant, base / key, seed)
        variants[key] = found
    return PreparedData(catalog.classes, variants, variant_of)


def _cached(directory: Path) -> PreparedVariant | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    values = {f.name: raw[f.name] for f in fields(PreparedVariant) if f.name in raw}
    values["columns"], values["skipped_examples"] = (tuple(values["columns"]),
                                                     tuple(values["skipped_examples"]))
    return PreparedVariant(**{**values, "directory": str(directory), "cached": True})


def _write_source(task: Task, catalog: Catalog, data: DataConfig, directory: Path) -> Path:
    """Stream the catalog's rows into small Parquet parts per split (skipped if done)."""
    done = directory / "DONE"
    if done.is_file():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    parts = {name: 0 for name in SPLIT_NAMES.values()}
    for frame in task.source_rows(catalog, data):
        for code, name in SPLIT_NAMES.items():
            rows = frame[frame["split"] == code].drop(columns="split")
            for start in range(0, len(rows), ROWS_PER_PART):
                folder = directory / name
                folder.mkdir(parents=True, exist_ok=True)
                table = pa.Table.from_pandas(rows.iloc[start:start + ROWS_PER_PART],
                                             preserve_index=False)
                pq.write_table(table, folder / f"part-{parts[name]:06d}.parquet")
                parts[name] += 1
    done.write_text(json.dumps(parts))
    return directory


def _prepare_block(batch: pa.Table, task: str, variant: dict[str, Any]) -> pa.Table:
    """Ray Data map function (module level: pickled by reference)."""
    return get_task(task).prepare_batch(batch, variant)


def _run_job(task: Task, catalog: Catalog, source: Path, variant: dict[str, Any],
             directory: Path, seed: int) -> PreparedVariant:
    """Shuffle, decode/tokenize on the cluster and write the shards of both splits."""
    import ray.data

    started = time.time()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    staging = directory.with_name(directory.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    for name in SPLIT_NAMES.values():
        # One block per source part, so the decode/tokenize tasks spread over every CPU
        # (read_parquet would merge the small source files into one block, one task).
        (_dataset_of(source / name, None)
         .random_shuffle(seed=seed)
         .map_batches(_prepare_block, batch_format="pyarrow", batch_size=None, num_cpus=1,
                      fn_kwargs={"task": task.name, "variant": variant})
         .write_parquet(str(staging / name)))
    counts = {name: _kept(staging / name) for name in SPLIT_NAMES.values()}
    skipped = _skipped(catalog, counts)
    _check_usable(catalog, counts, len(skipped))
    model_columns = [c for c in pq.read_schema(next((staging / "train").glob("*.parquet"))).names
                     if c not in ("key", "label")]
    prepared = PreparedVariant(
        key=directory.name, directory=str(directory), columns=("label", *model_columns),
        train_rows=len(counts["train"][0]), val_rows=len(counts["val"][0]),
        skipped=len(skipped), skipped_examples=tuple(skipped[:5]),
        seconds=round(time.time() - started, 3))
    manifest = {**asdict(prepared), "variant": variant, "source": catalog.source}
    del manifest["directory"], manifest["cached"]
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return prepared


def _kept(folder: Path) -> tuple[list[str], np.ndarray]:
    """Keys and labels that made it into a split's shards (two small columns)."""
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return [], np.array([], np.int32)
    table = pq.read_table(folder, columns=["key", "label"])
    return table.column("key").to_pylist(), table.column("label").to_numpy()


def _skipped(catalog: Catalog, counts: dict[str, tuple[list[str], np.ndarray]]) -> list[str]:
    """Catalog rows whose key is missing from the shards (unreadable files)."""
    kept = sum(len(keys) for keys, _ in counts.values())
    wanted = sum(catalog.count(code) for code in SPLIT_NAMES)
    if kept == wanted or len(catalog.locations) != len(catalog.split):
        return []  # tables: rows are not files, and preparation never drops one
    present = {k for keys, _ in counts.values() for k in keys}
    used = catalog.split != UNUSED
    return sorted(k for k, u in zip(catalog.locations, used, strict=False)
                  if u and k not in present)


def _check_usable(catalog: Catalog, counts: dict[str, tuple[list[str], np.ndarray]],
                  skipped: int) -> None:
    for cls, name in enumerate(catalog.classes):
        found = {split: int((labels == cls).sum()) for split, (_, labels) in counts.items()}
        if (catalog.labels == cls).any() and min(found.values()) == 0:
            raise DataError(
                f"class {name!r} has {sum(found.values())} readable example(s) after skipping "
                f"{skipped} unreadable item(s); every class needs at least one for training "
                "and one for validation")


def load_datasets(prepared: PreparedData) -> dict[str, dict[str, Any]]:
    """Each variant's train/val shards as materialized Ray Datasets: one read task per shard
    file on the cluster, blocks in the object store (spilled to disk when it fills), none in
    the driver.

    Materialized, not lazy: a lazy read inside a trial needs CPUs that the trials' workers
    hold, and hangs (measured; ../shared/FACTS.md). Reading with plain tasks into
    `from_arrow_refs` costs ≈0.01 s warm against ≈2 s for a `read_parquet` job.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, variant in prepared.variants.items():
        out[key] = {split: _dataset_of(Path(variant.split_dir(split)), list(variant.columns))
                    for split in SPLIT_NAMES.values()}
    return out


def _dataset_of(folder: Path, columns: list[str] | None) -> Any:
    """A materialized Ray Dataset with one block per Parquet file of `folder`, each read by
    a task on the cluster (the driver never holds a block)."""
    import ray
    import ray.data

    read = ray.remote(num_cpus=1)(_read_shard)
    refs = [read.remote(str(f), columns) for f in sorted(folder.glob("*.parquet"))]
    return ray.data.from_arrow_refs(refs)  # type: ignore[arg-type]


def _read_shard(path: str, columns: list[str] | None) -> pa.Table:
    return pq.read_table(path, columns=columns)


def prepare_local(task: Task, catalog: Catalog, data: DataConfig,
                  preprocessing: dict[str, Any]) -> dict[str, pa.Table]:
    """One variant's prepared splits in this process, without Ray: for tests and the
    benchmark's in-memory baseline (the search always prepares with `prepare`)."""
    variant = task.variant(preprocessing)
    parts: dict[str, list[pa.Table]] = {name: [] for name in SPLIT_NAMES.values()}
    for frame in task.source_rows(catalog, data):
        for code, name in SPLIT_NAMES.items():
            rows = frame[frame["split"] == code].drop(columns="split")
            if len(rows):
                source = pa.Table.from_pandas(rows, preserve_index=False)
                parts[name].append(task.prepare_batch(source, variant))
    return {name: pa.concat_tables(tables).drop_columns(["key"])
            for name, tables in parts.items()}


def read_split(variant: PreparedVariant, split: str) -> pa.Table:
    """A whole split in memory, without Ray (tests and the benchmark's in-memory baseline)."""
    return pq.read_table(variant.split_dir(split), columns=list(variant.columns))


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
    optimizer steps, equal on every DDP rank."""

    def __init__(self, make_pass: Callable[[int], Iterator[pa.Table]], steps: int | None = None
                 ) -> None:
        self.make_pass, self.steps = make_pass, steps
        self.passes = 0
        self._current: Iterator[pa.Table] | None = None

    def epoch(self) -> Iterator[pa.Table]:
        """The next epoch's batches."""
        if self.steps is None:
            self.passes += 1
            yield from (b for b in self.make_pass(self.passes) if b.num_rows > 1)
            return
        taken, empty_pass = 0, True
        while taken < self.steps:
            if self._current is None:
                self.passes += 1
                self._current, empty_pass = iter(self.make_pass(self.passes)), True
            batch = next(self._current, None)
            if batch is not None and batch.num_rows < 2:
                continue
            if batch is None:
                self._current = None
                if empty_pass:
                    return
                continue
            empty_pass = False
            taken += 1
            yield batch
