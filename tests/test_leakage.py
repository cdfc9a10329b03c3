"""Splits that do not leak: group splits (`data.group_column`), exact duplicates across splits
(reported, and dropped from validation/test by default), and `data.val_path` for images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl.config import parse
from automl.config.schema import DataConfig
from automl.data.catalog import TEST, TRAIN, UNUSED, VAL
from automl.data.duplicates import file_keys, resolve
from automl.errors import ConfigError, DataError
from automl.tasks import get_task
from tests.conftest import write_image_folder, write_text_csv

IMAGE, TEXT = get_task("image"), get_task("text")


def test_resolve_drops_later_copies_and_counts_them() -> None:
    split = np.array([TRAIN, VAL, TEST, TRAIN, VAL, TEST, TRAIN, UNUSED], np.int8)
    keys = np.array(["a", "a", "a", "b", "c", "c", "b", "a"], dtype=object)
    names = [f"row{i}" for i in range(8)]
    out, found = resolve(split, keys, names, drop=True)
    assert found.across == {"train→test": 1, "train→val": 1, "val→test": 1}
    assert found.within == 1 and found.removed == 3 and found.leaked == 3
    assert out.tolist() == [TRAIN, UNUSED, UNUSED, TRAIN, VAL, UNUSED, TRAIN, UNUSED]
    assert ["row0", "row1"] in found.examples
    kept, reported = resolve(split, keys, names, drop=False)
    assert np.array_equal(kept, split) and reported.removed == 0 and reported.leaked == 3
    line = reported.describe()
    assert line is not None and "1 val example(s) duplicate train ones" in line
    assert "kept (data.drop_duplicates: false)" in line
    assert resolve(split[:1], keys[:1], names[:1], drop=True)[1].describe() is None


def test_only_files_of_equal_size_are_read(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name, data in (("a", b"xx"), ("b", b"xx"), ("c", b"yy"), ("d", b"zzz")):
        (tmp_path / name).write_bytes(data)
    read: list[str] = []
    from automl import storage

    original = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda p: read.append(p) or original(p))
    files = [str(tmp_path / n) for n in "abcd"]
    keys = file_keys(files, [2, 2, 2, 3])
    assert keys[0] == keys[1] != keys[2] and keys[3].startswith("unique:")
    assert sorted(Path(p).name for p in read) == ["a", "b", "c"]


def test_an_image_copied_into_the_test_folder_leaves_the_test_split(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images")
    tests = write_image_folder(tmp_path / "tests", per_class=3, seed=5)
    shutil.copy(folder / "left" / "000.png", tests / "left" / "copy.png")
    catalog = IMAGE.scan(DataConfig(path=str(folder), test_path=str(tests)))
    assert catalog.duplicates is not None and catalog.duplicates.removed == 1
    copy = catalog.locations.index(str(tests / "left" / "copy.png"))
    assert catalog.split[copy] == UNUSED and catalog.count(TEST) == 9
    kept = IMAGE.scan(DataConfig(path=str(folder), test_path=str(tests),
                                 drop_duplicates=False))
    assert kept.count(TEST) == 10 and kept.fingerprint != catalog.fingerprint
    assert kept.duplicates is not None and kept.duplicates.leaked == 1


def test_a_repeated_text_leaves_validation(tmp_path: Path) -> None:
    table = write_text_csv(tmp_path / "reviews.csv", per_class=30)
    frame = pd.read_csv(table)
    repeated = pd.concat([frame, frame.iloc[:10]], ignore_index=True)  # 10 texts twice
    repeated.to_csv(table, index=False)
    catalog = TEXT.scan(DataConfig(path=str(table), val_fraction=0.5))
    found = catalog.duplicates
    assert found is not None and found.leaked + found.within == 10
    assert (catalog.split == UNUSED).sum() == found.removed == found.leaked
    assert found.examples and " row " in found.examples[0][0]


def _manifest(tmp_path: Path, folder: Path) -> Path:
    """Images of the folder in a manifest, each `object` group holding 3 images."""
    files = sorted(folder.rglob("*.png"))
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": [str(p) for p in files], "label": [p.parent.name for p in files],
                  "object": [f"{p.parent.name}-{int(p.stem) // 3}" for p in files]}
                 ).to_csv(manifest, index=False)
    return manifest


def test_a_group_never_spans_two_splits(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=24)
    manifest = _manifest(tmp_path, folder)
    catalog = IMAGE.scan(DataConfig(path=str(manifest), group_column="object",
                                    val_fraction=0.25, test_fraction=0.25))
    groups = pd.read_csv(manifest).set_index("path")["object"]
    by_group = pd.Series(catalog.split, index=[groups[p] for p in catalog.locations])
    assert by_group.groupby(level=0).nunique().max() == 1
    assert {TRAIN, VAL, TEST} == set(catalog.split)
    plain = IMAGE.scan(DataConfig(path=str(manifest), val_fraction=0.25, test_fraction=0.25))
    assert pd.Series(plain.split, index=by_group.index).groupby(level=0).nunique().max() > 1


def test_text_groups_and_group_errors(tmp_path: Path) -> None:
    table = write_text_csv(tmp_path / "reviews.csv", per_class=30)
    frame = pd.read_csv(table)
    frame["film"] = [f"{label}-{i // 4}" for i, label in enumerate(frame["label"])]
    frame.to_csv(table, index=False)
    catalog = TEXT.scan(DataConfig(path=str(table), group_column="film", val_fraction=0.3))
    assert pd.Series(catalog.split).groupby(frame["film"]).nunique().max() == 1
    frame.loc[3, "film"] = None
    frame.to_csv(table, index=False)
    with pytest.raises(DataError, match=r"1 row\(s\) have no value in data\.group_column"):
        TEXT.scan(DataConfig(path=str(table), group_column="film"))
    with pytest.raises(DataError, match=r"lacks|column"):
        TEXT.scan(DataConfig(path=str(table), group_column="nope"))
    folder = write_image_folder(tmp_path / "images")
    with pytest.raises(DataError, match="needs a manifest table"):
        IMAGE.scan(DataConfig(path=str(folder), group_column="object"))
    space = tmp_path / "space.yaml"
    space.write_text("backbones: [test_resnet]\ndata: {group_column: film, max_per_class: 5}\n")
    with pytest.raises(ConfigError, match=r"data\.group_column: cannot be combined"):
        parse.load(space)


def test_images_take_their_validation_split_from_val_path(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images")
    val = write_image_folder(tmp_path / "val", per_class=2, seed=3)
    catalog = IMAGE.scan(DataConfig(path=str(folder), val_path=str(val)))
    assert catalog.count(VAL) == 6 and catalog.count(TRAIN) == 36
    val_rows = {catalog.locations[i] for i in np.flatnonzero(catalog.split == VAL)}
    assert val_rows == {str(p) for p in val.rglob("*.png")}
    with pytest.raises(DataError, match=r"data\.val_path .* does not exist"):
        IMAGE.scan(DataConfig(path=str(folder), val_path=str(tmp_path / "nope")))
