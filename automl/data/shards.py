"""Prepare once, stream many: the data of a search as Parquet shards, made by Ray tasks.

1. The driver streams the task's source rows (file locations or texts, never pixels) into
   small Parquet parts, one folder per split.
2. Per preprocessing variant, one Ray task per part decodes / tokenizes it on any CPU of the
   cluster and writes one prepared shard (`key`, `label`, model columns). Rows are shuffled
   before: by the driver when it holds the row list (image files), else by a Ray Data
   shuffle of the source parts (streamed text tables).
3. A manifest written last marks a variant complete. Folders are named by a fingerprint of
   the content (files, sizes, mtimes, labels, split settings) and of the variant, so a second
   search on the same data finds them and skips preparation.

Trials read the shards back as Ray Datasets (see `load_datasets`); the driver only ever holds
file listings, labels and counts.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from automl import storage
from automl.data.catalog import SEARCH_SPLITS, SPLIT_NAMES, Catalog, fingerprint
from automl.data.shard_cache import (
    MANIFEST,
    checksum,
    discarded_on_error,
    publish,
    staging_name,
    verified_manifest,
)
from automl.errors import DataError
from automl.tasks import Task, get_task

if TYPE_CHECKING:
    from automl.config.schema import DataConfig

FORMAT_VERSION = 2
"""In every variant's cache key: 2 keeps images encoded (1 held raw pixels), so shards of
one format are never read as the other."""
ROWS_PER_PART = 250
"""Source rows per Parquet part: each part is one preparation task and one shard."""


@dataclass(frozen=True)
class PreparedVariant:
    """The prepared shards of one preprocessing variant."""

    key: str
    directory: str
    """Holds `train/`, `val/` and `test/` Parquet shards and the manifest (a path or URI)."""
    columns: tuple[str, ...]
    """The columns a trial reads (label and model inputs)."""
    train_rows: int
    val_rows: int
    skipped: int
    skipped_examples: tuple[str, ...]
    seconds: float
    """Time the preparation took when it ran (cached variants keep the original figure)."""
    cached: bool = False
    test_rows: int = 0
    """Rows of the test split: read only to score the selected model after the search."""

    def split_dir(self, split: str) -> str:
        """The shard folder of `train`, `val` or `test`."""
        return storage.join(self.directory, split)


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
        test = f" / {first.test_rows} test" if first.test_rows else ""
        return (f"Data: {source}: {len(self.classes)} classes, {first.train_rows} train / "
                f"{first.val_rows} val{test}; " + "; ".join(notes))


def prepare(task: Task, catalog: Catalog, data: DataConfig,
            preprocessing: dict[str, dict[str, Any]], cache_root: str, seed: int = 0
            ) -> PreparedData:
    """Prepare (or find in the cache) every variant the backbones need, under `cache_root`
    (a path or storage URI every node can reach); needs Ray running."""
    base = storage.join(cache_root, catalog.fingerprint)
    variant_of, wanted = {}, {}
    for label, pre in preprocessing.items():
        key = variant_key(task, pre)
        variant_of[label], wanted[key] = key, task.variant(pre)
    variants = {}
    for key, variant in wanted.items():
        found = _cached(storage.join(base, key))
        if found is None:
            source = _write_source(task, catalog, data, storage.join(base, "source"))
            found = _run_job(task, catalog, source, variant, storage.join(base, key), seed)
        variants[key] = found
    return PreparedData(catalog.classes, variants, variant_of)


def variant_key(task: Task, preprocessing: dict[str, Any]) -> str:
    """The cache key of the prepared data a backbone's preprocessing reads."""
    return fingerprint(task.name, task.variant(preprocessing), FORMAT_VERSION)


def split_dir(data_root: str, task: Task, preprocessing: dict[str, Any], split: str) -> str:
    """The shard folder of one split of a prepared variant under a search's data root
    (`cache_root/<catalog fingerprint>`)."""
    return storage.join(data_root, variant_key(task, preprocessing), split)


def first_rows(folder: str, rows: int) -> pa.Table | None:
    """Up to `rows` prepared rows from the first shards of `folder` (None if it is gone)."""
    if not storage.exists(folder):
        return None
    tables: list[pa.Table] = []
    for file in storage.list_files(folder, ".parquet"):
        tables.append(read_table(file))
        if sum(t.num_rows for t in tables) >= rows:
            break
    return pa.concat_tables(tables).slice(0, rows) if tables else None


def _cached(directory: str) -> PreparedVariant | None:
    """The prepared variant in `directory` when its manifest and shards check out
    (`prepared_cache.verified_manifest`), else None: it is prepared again."""
    raw = verified_manifest(directory)
    if raw is None:
        return None
    values = {f.name: raw[f.name] for f in fields(PreparedVariant) if f.name in raw}
    values["columns"], values["skipped_examples"] = (tuple(values["columns"]),
                                                     tuple(values["skipped_examples"]))
    return PreparedVariant(**{**values, "directory": str(directory), "cached": True})


def _write_source(task: Task, catalog: Catalog, data: DataConfig, directory: str) -> str:
    """Stream the catalog's rows into small Parquet parts per split (skipped if done)."""
    done = storage.join(directory, "DONE")
    if storage.is_file(done):
        return directory
    final, directory = directory, staging_name(directory)
    with discarded_on_error(directory, final):
        _write_parts(task, catalog, data, directory)
    publish(directory, final)  # or another search wrote the same source first
    return final


def _write_parts(task: Task, catalog: Catalog, data: DataConfig, directory: str) -> None:
    parts = {name: 0 for name in SPLIT_NAMES.values()}
    for name in SPLIT_NAMES.values():
        storage.make_dirs(storage.join(directory, name))
    for frame in task.source_rows(catalog, data):
        for code, name in SPLIT_NAMES.items():
            rows = frame[frame["split"] == code].drop(columns="split")
            for start in range(0, len(rows), ROWS_PER_PART):
                table = pa.Table.from_pandas(rows.iloc[start:start + ROWS_PER_PART],
                                             preserve_index=False)
                _write_table(table, storage.join(directory, name,
                                                 f"part-{parts[name]:06d}.parquet"))
                parts[name] += 1
    storage.write_text(storage.join(directory, "DONE"), json.dumps(parts))


def _write_table(table: pa.Table, location: str) -> None:
    fs, path = storage.filesystem(location)
    pq.write_table(table, path, filesystem=fs)


def read_table(location: str, columns: list[str] | None = None) -> pa.Table:
    """One prepared Parquet shard (a path or URI)."""
    fs, path = storage.filesystem(location)
    return pq.read_table(path, columns=columns, filesystem=fs)


@dataclass(frozen=True)
class _PartResult:
    """What one preparation task reports back: counts, never rows."""

    rows: int
    label_counts: list[int]
    skipped: list[str]
    columns: list[str]
    bytes: int = 0
    """Size of the shard file written (0: no readable row, no file)."""


def _prepare_part(part: str | pa.Table, task: str, variant: dict[str, Any], out: str,
                  num_classes: int) -> _PartResult:
    """One Ray task: a source part (a Parquet file, or a shuffled block) → one shard file."""
    source = read_table(part) if isinstance(part, str) else part
    prepared = get_task(task).prepare_batch(source, variant)
    size = 0
    if prepared.num_rows:
        _write_table(prepared, out)
        fs, path = storage.filesystem(out)
        size = int(fs.get_file_info(path).size or 0)
    kept = set(prepared.column("key").to_pylist())
    skipped = [k for k in source.column("key").to_pylist() if k not in kept]
    counts = np.bincount(prepared.column("label").to_numpy(), minlength=num_classes)
    columns = [c for c in prepared.column_names if c not in ("key", "label")]
    return _PartResult(prepared.num_rows, counts.tolist(), skipped, columns, size)


def _source_parts(task: Task, folder: str, seed: int) -> list[Any]:
    """The parts to prepare: the source files when the task already shuffled its rows, else
    the blocks of a Ray Data shuffle of them (tables are streamed in file order, and a table
    sorted by label would otherwise give single-class shards)."""
    # A source written before test splits existed has no `test/` folder: no test parts.
    files = storage.list_files(folder, ".parquet") if storage.exists(folder) else []
    if task.shuffled_source or not files:
        return files
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return list(dataset_of(folder, None).random_shuffle(seed=seed).to_arrow_refs())


def _run_job(task: Task, catalog: Catalog, source: str, variant: dict[str, Any],
             directory: str, seed: int) -> PreparedVariant:
    """Decode/tokenize every source part as a Ray task on the cluster and write the shards.

    Plain tasks, not a Ray Data pipeline: each part is independent, and Ray Data's executor
    (driver loop, stats and autoscaling actors) cost ≈ 35 % of 2 CPUs here (bench/streaming.py
    measured 1.2× from 1 to 2 CPUs with it, 1.9× with tasks)."""
    started = time.time()
    # Written under a name of this process's own, then renamed into place: a second search
    # preparing the same data at once never sees (or deletes) half of it.
    staging = staging_name(directory)
    with discarded_on_error(staging, directory):
        prepared = _prepare_into(task, catalog, source, variant, staging, directory, seed,
                                 started)
    if publish(staging, directory):
        return prepared
    found = _cached(directory)  # another search finished the same variant first
    if found is None:
        raise DataError(f"prepared data {directory}: could not be moved into place")
    return found


def _prepare_into(task: Task, catalog: Catalog, source: str, variant: dict[str, Any],
                  staging: str, directory: str, seed: int, started: float) -> PreparedVariant:
    """One Ray task per source part writes its shard into `staging`, then the manifest
    (counts, and every shard with its rows and size) is written last."""
    import ray

    prepare_part = ray.remote(num_cpus=1)(_prepare_part)
    pending: dict[str, list[Any]] = {}
    for name in SPLIT_NAMES.values():
        storage.make_dirs(storage.join(staging, name))
        pending[name] = [
            prepare_part.remote(part, task.name, variant,
                                storage.join(staging, name, f"{i:06d}.parquet"),
                                len(catalog.classes))
            for i, part in enumerate(_source_parts(task, storage.join(source, name), seed))]
    results: dict[str, list[_PartResult]] = {name: ray.get(refs)
                                             for name, refs in pending.items()}
    counts = {name: np.array([r.label_counts for r in parts], np.int64).reshape(
        -1, len(catalog.classes)).sum(axis=0) for name, parts in results.items()}
    skipped = sorted(k for parts in results.values() for r in parts for k in r.skipped)
    _check_usable(catalog, counts, len(skipped))
    model_columns = next(r.columns for r in results["train"] if r.rows)
    prepared = PreparedVariant(
        key=storage.name(directory), directory=directory, columns=("label", *model_columns),
        train_rows=int(counts["train"].sum()), val_rows=int(counts["val"].sum()),
        test_rows=int(counts["test"].sum()),
        skipped=len(skipped), skipped_examples=tuple(skipped[:5]),
        seconds=round(time.time() - started, 3))
    shards = {name: [{"file": f"{i:06d}.parquet", "rows": r.rows, "bytes": r.bytes}
                     for i, r in enumerate(parts) if r.rows] for name, parts in results.items()}
    manifest = {**asdict(prepared), "variant": variant, "source": catalog.source,
                "shards": shards, "checksum": checksum(shards)}
    del manifest["directory"], manifest["cached"]
    storage.write_text(storage.join(staging, MANIFEST), json.dumps(manifest, indent=2))
    return prepared


def _check_usable(catalog: Catalog, counts: dict[str, np.ndarray], skipped: int) -> None:
    for cls, name in enumerate(catalog.classes):
        found = {split: int(counts[split][cls]) for split in SEARCH_SPLITS}
        if (catalog.labels == cls).any() and min(found.values()) == 0:
            raise DataError(
                f"class {name!r} has {sum(found.values())} readable example(s) after skipping "
                f"{skipped} unreadable item(s); every class needs at least one for training "
                "and one for validation")


def load_datasets(prepared: PreparedData) -> dict[str, dict[str, Any]]:
    """Each variant's train/val shards (never the test split) as materialized Ray Datasets
    (`dataset_of`): blocks in the object store (spilled to disk when it fills), none in the
    driver.

    Materialized, not lazy: a lazy read inside a trial needs CPUs that the trials' workers
    hold, and hangs (measured; ../shared/FACTS.md). Reading with plain tasks into
    `from_arrow_refs` costs ≈0.01 s warm against ≈2 s for a `read_parquet` job.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, variant in prepared.variants.items():
        out[key] = {split: dataset_of(variant.split_dir(split), _read_columns(variant, split))
                    for split in SEARCH_SPLITS}
    return out


def _read_columns(variant: PreparedVariant, split: str) -> list[str]:
    """What a trial reads of a split: label and model inputs, and on validation each row's
    key too (the trial keeps its validation predictions by key, for soups and ensembles)."""
    return [*variant.columns, "key"] if split == "val" else list(variant.columns)


def dataset_of(folder: str, columns: list[str] | None) -> Any:
    """A materialized Ray Dataset with one block per Parquet file of `folder`, read by tasks
    on the cluster (the driver never holds a block): at most one per cluster CPU, each
    returning its run of files as separate blocks."""
    import ray
    import ray.data

    files = storage.list_files(folder, ".parquet")
    # A task per file started a worker per file at once (18 s for 12 files on 2 CPUs); a
    # task per CPU spreads blocks over the nodes without a cold start for every file. No CPU
    # slot: a block lost with a node is rebuilt from its task's lineage while the trials
    # hold every CPU (with num_cpus=1 the rebuild would wait for a trial to end).
    tasks = max(1, min(len(files), int(ray.cluster_resources().get("CPU", 1))))
    bounds = np.linspace(0, len(files), tasks + 1).round().astype(int)
    read = ray.remote(num_cpus=0)(_read_tables)
    refs: list[Any] = []
    for start, end in itertools.pairwise(int(b) for b in bounds):
        if end > start:
            out: Any = read.options(num_returns=end - start).remote(files[start:end], columns)
            refs.extend([out] if end - start == 1 else out)
    return ray.data.from_arrow_refs(refs)


def _read_tables(locations: list[str], columns: list[str] | None) -> Any:
    """Ray task body of `dataset_of`: each file's table, as one return value per file."""
    tables = [read_table(f, columns) for f in locations]
    return tables[0] if len(tables) == 1 else tuple(tables)


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
    tables = {name: pa.concat_tables(found) for name, found in parts.items()
              if found or name in SEARCH_SPLITS}
    return {name: table if name == "val" else table.drop_columns(["key"])
            for name, table in tables.items()}


def read_split(variant: PreparedVariant, split: str) -> pa.Table:
    """A whole split in memory, without Ray (tests and the benchmark's in-memory baseline)."""
    return pa.concat_tables(read_table(f, list(variant.columns))
                            for f in storage.list_files(variant.split_dir(split), ".parquet"))
