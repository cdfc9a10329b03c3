"""Preparation on a local Ray: Ray tasks write the shards, the cache finds them again,
trials get materialized datasets. Marked integration: it starts Ray."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from automl.config.schema import DataConfig
from automl.data.catalog import VAL
from automl.data.shards import load_datasets, prepare
from automl.errors import DataError
from automl.tasks import get_task

pytestmark = pytest.mark.integration
PRE = {"image_size": 24, "interpolation": "bicubic", "crop_pct": 1.0, "mean": [0.5] * 3,
       "std": [0.5] * 3}
TASK = get_task("image")


@pytest.fixture(scope="module")
def local_ray() -> object:
    from automl.search.ray_session import init_ray

    init_ray(None)
    yield None
    import ray

    ray.shutdown()


def _prepare(  # type: ignore[no-untyped-def]
    source: Path, cache: Path, pres: dict[str, dict] | None = None
):
    data = DataConfig(path=str(source), val_fraction=0.25)
    catalog = TASK.scan(data)
    return catalog, prepare(TASK, catalog, data, pres or {"b:scratch": PRE}, str(cache))


def test_prepare_skips_unreadable_then_hits_the_cache(
    image_folder: Path, tmp_path: Path, local_ray: object,
) -> None:
    (image_folder / "left" / "broken.png").write_bytes(b"not an image")
    started = time.time()
    catalog, first = _prepare(image_folder, tmp_path / "cache")
    first_s = time.time() - started
    (variant,) = first.variants.values()
    assert not variant.cached and variant.skipped == 1
    assert variant.skipped_examples[0].endswith("broken.png")
    assert variant.train_rows + variant.val_rows == 36
    assert "1 unreadable item(s) skipped" in first.summary(catalog.source, 0)

    started = time.time()
    _, second = _prepare(image_folder, tmp_path / "cache")
    assert second.variants[variant.key].cached and time.time() - started < 0.05 * first_s
    assert "0 prepared in 0.0 s, 1 cached" in second.summary(catalog.source, 0)

    # Another input size is a second variant; the first stays cached.
    _, third = _prepare(image_folder, tmp_path / "cache",
                        {"a": PRE, "b": {**PRE, "image_size": 16}})
    assert [v.cached for v in third.variants.values()] == [True, False]
    assert third.variant_of["a"] != third.variant_of["b"]

    # Trials get materialized datasets with exactly the validation rows of the catalog.
    datasets = load_datasets(first)[variant.key]
    val = datasets["val"].to_pandas()
    assert sorted(val["label"]) == sorted(catalog.labels[catalog.split == VAL].tolist())
    assert datasets["train"].count() == variant.train_rows
    # Validation rows carry their keys (the trial keeps its predictions by key); training
    # rows only what a trial reads.
    assert set(val.columns) == {"label", "image", "key"}
    assert set(datasets["train"].columns()) == {"label", "image"}


def test_manifest_with_a_missing_file(
    image_folder: Path, tmp_path: Path, local_ray: object
) -> None:
    files = sorted(image_folder.rglob("*.png"))
    rows = [{"path": str(f.relative_to(image_folder)), "label": f.parent.name} for f in files]
    rows.append({"path": "left/gone.png", "label": "left"})
    manifest = image_folder / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    _, prepared = _prepare(manifest, tmp_path / "cache")
    (variant,) = prepared.variants.values()
    assert variant.skipped == 1 and variant.skipped_examples[0].endswith("left/gone.png")


def test_too_few_readable_images(tmp_path: Path, local_ray: object) -> None:
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "few", per_class=2)
    # different bytes: two identical files would be one duplicate dropped from validation
    (root / "top" / "000.png").write_bytes(b"junk 0")
    (root / "top" / "001.png").write_bytes(b"junk 1")
    expected = r"class 'top' has 0 readable example\(s\) after skipping 2"
    with pytest.raises(DataError, match=expected):
        _prepare(root, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("manifest.json"))  # nothing cached


def _shard_labels(variant_dir: str) -> list[list[int]]:
    return [pq.read_table(f, columns=["label"]).column("label").to_pylist()
            for f in sorted(Path(variant_dir, "train").glob("*.parquet"))]


def test_shards_are_shuffled_when_the_source_is_sorted_by_class(
    tmp_path: Path, tiny_bert: Path, local_ray: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Folders list images class by class and tables are often sorted by label; without the
    shuffle each shard would hold one class and the trials' local shuffle could not fix it."""
    import automl.data.shards
    from tests.conftest import write_image_folder

    monkeypatch.setattr(automl.data.shards, "ROWS_PER_PART", 20)
    images = write_image_folder(tmp_path / "sorted", per_class=20)
    _, prepared = _prepare(images, tmp_path / "cache")
    (variant,) = prepared.variants.values()
    shards = _shard_labels(variant.directory)
    assert len(shards) == 3 and all(len(set(labels)) > 1 for labels in shards)

    table = tmp_path / "sorted.csv"
    rows = [f"good fun film {i},pos" for i in range(60)] + [f"bad dull film {i},neg"
                                                              for i in range(60)]
    table.write_text("text,label\n" + "\n".join(rows) + "\n")
    text = get_task("text")
    data = DataConfig(path=str(table), val_fraction=0.25)
    pre = {"source": str(tiny_bert), "max_tokens": 16}
    prepared = prepare(text, text.scan(data), data, {"bert": pre}, str(tmp_path / "cache"))
    (variant,) = prepared.variants.values()
    shards = _shard_labels(variant.directory)
    assert variant.train_rows == 90 and len(shards) == 5
    assert all(len(set(labels)) > 1 for labels in shards)
