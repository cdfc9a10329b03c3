"""Zero-config searches without Ray: task detection on every kind of source, preset choice,
fitting a preset to the hardware and the data, and the written space that re-runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from automl.cli import main
from automl.config import parse as config
from automl.config import presets, space_file
from automl.data.detect import detect
from automl.errors import AutomlError, DataError
from tests.conftest import write_image_folder, write_text_csv

SHIPPED = sorted(presets.SPACES_DIR.glob("*.yaml"))


def _reviews(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({
        "id": range(n),
        "review": [f"this film number {i} was {'great fun' if i % 2 else 'dull and slow'}"
                   for i in range(n)],
        "sentiment": ["pos" if i % 2 else "neg" for i in range(n)],
        "score": [0.1 * i for i in range(n)],
    })


def test_an_image_folder_is_image_classification(tmp_path: Path) -> None:
    found = detect(str(write_image_folder(tmp_path / "imgs", per_class=3)))
    assert found.task == "image" and found.data_section() == {"path": found.path}
    assert "9 images in 3 class sub-folders" in found.reason


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet", "jsonl"])
def test_a_table_of_texts_is_text_classification_in_any_format(tmp_path: Path,
                                                               suffix: str) -> None:
    frame, path = _reviews(), tmp_path / f"reviews.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="\t" if suffix == "tsv" else ",", index=False)
    found = detect(str(path))
    assert (found.task, found.text_column, found.label_column) == ("text", "review", "sentiment")
    assert "'review'" in found.reason and "2 classes" in found.reason


def test_an_image_manifest_is_image_classification(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", per_class=3)
    rows = [{"file": f"imgs/{p.parent.name}/{p.name}", "kind": p.parent.name}
            for p in sorted((tmp_path / "imgs").rglob("*.png"))]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    found = detect(str(tmp_path / "manifest.csv"))
    assert (found.task, found.path_column, found.label_column) == ("image", "file", "kind")


def test_ambiguous_columns_list_the_candidates_and_the_flag_resolves_them(
        tmp_path: Path) -> None:
    # Neither text column nor label column has a conventional name (text, label, ...).
    frame = _reviews().rename(columns={"sentiment": "mood", "review": "notes"})
    frame["genre"] = ["drama" if i % 3 else "comedy" for i in range(len(frame))]
    frame["summary"] = [f"a summary of film {i} in several words" for i in range(len(frame))]
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"ambiguous text column.*'notes', 'summary'.*"
                       "--text-column"):
        detect(str(tmp_path / "t.csv"))
    with pytest.raises(DataError, match=r"ambiguous label column.*'mood', 'genre'.*"
                       "--label-column"):
        detect(str(tmp_path / "t.csv"), text_column="notes")
    found = detect(str(tmp_path / "t.csv"), text_column="summary", label_column="genre")
    assert (found.text_column, found.label_column) == ("summary", "genre")


@pytest.mark.parametrize(("layout", "message"), [
    ("missing", "does not exist"),
    ("loose", "no class sub-folders"),
    ("one_class", "one sub-folder"),
    ("empty", "no images"),
    ("notes.txt", "neither a folder"),
    ("numbers.csv", "found no text column"),
    ("bad_column", "has no column 'body'"),
])
def test_wrong_sources_say_what_is_wrong(tmp_path: Path, layout: str, message: str) -> None:
    target = tmp_path / "src"
    kwargs = {}
    if layout in ("loose", "one_class"):
        write_image_folder(tmp_path / "tmp", per_class=2)
        (target / ("only" if layout == "one_class" else "")).mkdir(parents=True)
        for png in (tmp_path / "tmp" / "left").glob("*.png"):
            png.rename(target / ("only" if layout == "one_class" else "") / png.name)
    elif layout == "empty":
        target.mkdir()
    elif layout == "notes.txt":
        target = tmp_path / layout
        target.write_text("hello")
    elif layout in ("numbers.csv", "bad_column"):
        target = tmp_path / "t.csv"
        pd.DataFrame({"x": [1.5, 2.5, 3.5], "y": [1, 0, 1]}).to_csv(target, index=False)
        if layout == "bad_column":
            kwargs = {"text_column": "body"}
    with pytest.raises(DataError, match=message):
        detect(str(target), **kwargs)


def test_a_folder_refuses_text_flags(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "imgs", per_class=2)
    with pytest.raises(DataError, match="takes its labels from the class sub-folder names"):
        detect(str(folder), label_column="label")


@pytest.mark.parametrize(("preset", "budget", "chosen"), [
    (None, None, "quick"), (None, "5m", "quick"), (None, "40m", "medium"),
    (None, "3h", "best"), ("best", "10m", "best"),
])
def test_the_preset_follows_the_name_or_the_budget(preset: str | None, budget: str | None,
                                                   chosen: str) -> None:
    assert presets.choose_preset(preset, budget)[0] == chosen


def test_bad_preset_or_budget_is_a_clear_error() -> None:
    with pytest.raises(AutomlError, match="choose one of quick, medium, best"):
        presets.choose_preset("fast", None)
    with pytest.raises(AutomlError, match="expected a duration"):
        presets.choose_preset(None, "soon")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_preset_fits_and_its_written_space_loads_back(path: Path,
                                                                    tmp_path: Path) -> None:
    cfg = config.load(path, {"data.path": str(tmp_path)})
    assert cfg.preset is not None and cfg.search.budget_s and cfg.search.max_trials is None
    fitted, notes = presets.fit_preset(cfg, gpus=0, train_rows=100_000,
                                       hub_reachable=lambda: False)
    assert fitted.preset is None and all(b.weights != "hub" for b in fitted.backbones)
    assert any("model hub unreachable" in n for n in notes)
    assert any("no GPU: left out" in n for n in notes)
    assert fitted.train.steps_per_epoch is not None  # 100k examples: epochs become slices
    written = space_file.write_space(fitted, tmp_path / "space.yaml", "header")
    assert dataclasses.replace(config.load(written), source=fitted.source) == fitted


def test_on_gpus_the_zoo_grows_and_images_keep_their_size(tmp_path: Path) -> None:
    cfg = config.load(presets.preset_path("image", "quick"), {"data.path": str(tmp_path)})
    fitted, _ = presets.fit_preset(cfg, gpus=4, train_rows=500, hub_reachable=lambda: True)
    assert fitted.resources.use_gpu and fitted.train.precision == "bf16"
    assert fitted.data.image_size is None and fitted.train.steps_per_epoch is None
    names = [b.name for b in fitted.backbones]
    assert "mobilenetv3_large_100.ra_in1k" in names and "convnext_tiny.fb_in22k_ft_in1k" in names


def test_a_preset_with_no_loadable_backbone_says_how_to_fix_it(tmp_path: Path) -> None:
    cfg = config.load(presets.preset_path("text", "quick"), {"data.path": str(tmp_path)})
    hub_only = dataclasses.replace(cfg, backbones=tuple(b for b in cfg.backbones
                                                        if b.weights == "hub"))
    with pytest.raises(AutomlError, match="no backbone's weights can be loaded here"):
        presets.fit_preset(hub_only, 0, 100, hub_reachable=lambda: False)


def test_a_bad_preset_section_is_reported_with_its_keys(tmp_path: Path) -> None:
    text = presets.preset_path("image", "quick").read_text()
    bad = text.replace("examples_per_epoch: {cpu: 2000", "examples_per_epoch: {cpu: -1") \
        .replace("precision: bf16", "precision: fp8")
    (tmp_path / "p.yaml").write_text(bad)
    with pytest.raises(config.ConfigError) as info:
        config.load(tmp_path / "p.yaml")
    assert "preset.examples_per_epoch" in str(info.value)
    assert "preset.gpu.precision" in str(info.value)


def test_the_demo_spaces_round_trip_through_space_yaml(tmp_path: Path) -> None:
    for name in ("demo_vision", "demo_text"):
        cfg = config.load(Path("search_spaces") / f"{name}.yaml")
        written = space_file.write_space(cfg, tmp_path / f"{name}.yaml", "x")
        assert dataclasses.replace(config.load(written), source=cfg.source) == cfg
        assert "TPE + ASHA" in space_file.describe(cfg)[-1]


@pytest.mark.parametrize(("argv", "message"), [
    (["search"], "needs --data PATH"),
    (["search", "search_spaces/demo_vision.yaml", "--preset", "quick"], "--preset and --task"),
    (["search", "--resume", "runs/x", "--preset", "quick"], "--resume takes only"),
    (["search", "--data", "no/such/folder"], "does not exist"),
])
def test_cli_zero_config_mistakes_exit_2(argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_text_fixture_is_detected(tmp_path: Path) -> None:
    found = detect(str(write_text_csv(tmp_path / "r.csv")))
    assert (found.task, found.text_column, found.label_column) == ("text", "text", "label")
