from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automl.data import list_images, prepare_images, scan_image_folder, stratified_split
from automl.errors import DataError

PRE = {"image_size": 24, "interpolation": "bicubic", "crop_pct": 1.0, "mean": [0.5] * 3,
       "std": [0.5] * 3}


def test_scan_and_prepare(image_folder: Path) -> None:
    found = scan_image_folder(image_folder)
    assert found.classes == ["center", "left", "top"] and len(found.files) == 36
    prepared = prepare_images(image_folder, [PRE], val_fraction=0.25, seed=0)
    (key,) = prepared.train
    assert prepared.train[key].shape == (27, 24, 24, 3) and prepared.train[key].dtype == np.uint8
    assert np.bincount(prepared.val_labels).tolist() == [3, 3, 3]


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
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        scan_image_folder(tmp_path / "empty")
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "one")
    for cls in ("top", "center"):
        for f in (root / cls).iterdir():
            f.unlink()
    with pytest.raises(DataError, match="single class"):
        scan_image_folder(root)


def test_unreadable_images_are_skipped_and_counted(image_folder: Path) -> None:
    (image_folder / "left" / "broken.png").write_bytes(b"not an image")
    prepared = prepare_images(image_folder, [PRE], val_fraction=0.25, seed=0)
    assert len(prepared.skipped) == 1 and prepared.skipped[0].endswith("broken.png")
    assert len(prepared.train_labels) + len(prepared.val_labels) == 36


def test_truncated_jpeg_is_skipped_and_counted(image_folder: Path) -> None:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    full = image_folder / "top" / "photo.jpg"
    Image.fromarray(noise).save(full, quality=95)
    truncated = image_folder / "top" / "cut.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with Image.open(truncated) as img:
        img.verify()  # the header is fine: only decoding the pixels fails
    prepared = prepare_images(image_folder, [PRE, {**PRE, "image_size": 16}], 0.25, seed=0)
    assert [Path(p).name for p in prepared.skipped] == ["cut.jpg"]
    assert len(prepared.train_labels) + len(prepared.val_labels) == 37
    assert {a.shape[1] for a in prepared.train.values()} == {24, 16}


def test_too_few_readable_images(tmp_path: Path) -> None:
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "few", per_class=2)
    (root / "top" / "000.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"class 'top' has 1 readable image\(s\) after skipping 1"):
        prepare_images(root, [PRE], val_fraction=0.5, seed=0)


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list_images([str(tmp_path / "nope.png")])
