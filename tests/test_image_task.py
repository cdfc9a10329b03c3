"""Image task: folder and manifest sources, decoding, collation (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from automl.config.schema import DataConfig
from automl.data.catalog import TRAIN, VAL, stratified_split
from automl.data.shards import prepare_local
from automl.errors import DataError
from automl.tasks import get_task
from automl.tasks.image_files import list_images
from tests.helpers import CPU, tiny_plan

PRE = {"image_size": 24, "interpolation": "bicubic", "crop_pct": 1.0, "mean": [0.5] * 3,
       "std": [0.5] * 3}
TASK = get_task("image")


def _scan(path: Path | str, **options: object):  # type: ignore[no-untyped-def]
    return TASK.scan(DataConfig(path=str(path), val_fraction=0.25, **options))  # type: ignore[arg-type]


def test_scan_prepare_and_collate(image_folder: Path) -> None:
    catalog = _scan(image_folder)
    assert catalog.classes == ("center", "left", "top") and len(catalog.locations) == 36
    assert catalog.count(TRAIN) == 27
    assert np.bincount(catalog.labels[catalog.split == VAL]).tolist() == [3, 3, 3]
    tables = prepare_local(TASK, catalog, DataConfig(path=str(image_folder)), PRE)
    assert tables["train"].num_rows == 27 and tables["train"].column_names == ["label", "image"]
    plan = tiny_plan(list(catalog.classes), preprocessing=PRE)
    pixels, labels = TASK.collate(tables["val"], plan, CPU)
    assert pixels.shape == (9, 3, 24, 24) and pixels.dtype == torch.float32
    assert labels.tolist() == tables["val"].column("label").to_pylist()
    assert float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0  # mean = std = 0.5
    flipped, _ = TASK.collate(tables["val"], plan, CPU, augment=0)
    same = [torch.equal(a, b) for a, b in zip(flipped, pixels, strict=True)]
    assert 0 < sum(same) < 9  # about half the images flipped


def test_same_data_same_fingerprint_and_changes_are_seen(image_folder: Path) -> None:
    first = _scan(image_folder)
    assert _scan(image_folder).fingerprint == first.fingerprint
    assert _scan(image_folder, seed=1).fingerprint != first.fingerprint
    (image_folder / "top" / "000.png").write_bytes((image_folder / "top" / "001.png").read_bytes())
    assert _scan(image_folder).fingerprint != first.fingerprint


def test_manifest_relative_paths_and_columns(image_folder: Path) -> None:
    files = sorted(image_folder.rglob("*.png"))
    rows = [(f"{p.parent.name}/{p.name}", p.parent.name) for p in files]
    manifest = image_folder / "train.csv"
    pd.DataFrame(rows, columns=["file", "kind"]).to_csv(manifest, index=False)
    catalog = _scan(manifest, path_column="file", label_column="kind")
    assert catalog.classes == ("center", "left", "top") and len(catalog.locations) == 36
    assert all(Path(p).is_file() for p in catalog.locations)
    expected = r"has no column\(s\) \['path', 'label'\]; it has \['file', 'kind'\]"
    with pytest.raises(DataError, match=expected):
        _scan(manifest)


def test_manifest_with_mixed_label_types_is_refused(image_folder: Path) -> None:
    files = sorted(str(p) for p in image_folder.rglob("*.png"))
    manifest = image_folder / "m.jsonl"
    labels: list[object] = [i % 2 for i in range(len(files))]
    labels[5] = "cat"
    pd.DataFrame({"path": files, "label": labels}).to_json(manifest, orient="records", lines=True)
    with pytest.raises(DataError, match=r"mixes label types \(0 and 'cat'\)"):
        _scan(manifest)


def test_unreadable_and_truncated_images_are_dropped(image_folder: Path) -> None:
    from PIL import Image

    (image_folder / "left" / "broken.png").write_bytes(b"not an image")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    full = image_folder / "top" / "photo.jpg"
    Image.fromarray(noise).save(full, quality=95)
    truncated = image_folder / "top" / "cut.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with Image.open(truncated) as img:
        img.verify()  # the header is fine: only decoding the pixels fails
    catalog = _scan(image_folder)
    assert len(catalog.locations) == 39
    tables = prepare_local(TASK, catalog, DataConfig(path=str(image_folder)), PRE)
    assert tables["train"].num_rows + tables["val"].num_rows == 37


def test_split_is_stratified_and_seeded() -> None:
    labels = [0] * 50 + [1] * 10
    a = stratified_split(labels, 0.2, seed=1)
    b = stratified_split(labels, 0.2, seed=1)
    c = stratified_split(labels, 0.2, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    assert np.bincount(np.asarray(labels)[a[1]]).tolist() == [10, 2]


def test_missing_and_empty_and_single_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _scan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        _scan(tmp_path / "empty")
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "one")
    for cls in ("top", "center"):
        for f in (root / cls).iterdir():
            f.unlink()
    with pytest.raises(DataError, match="single class"):
        _scan(root)


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list_images([str(tmp_path / "nope.png")])
