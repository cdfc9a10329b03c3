"""Every path form a user types: relative, ~, file://, remote URIs, and what is rejected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from automl import paths
from automl.config import parse as config
from automl.errors import AutomlError, ConfigError


def test_relative_path_resolves_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert paths.resolve("runs/demo") == str(tmp_path / "runs/demo")
    assert paths.resolve("./a/../b") == str(tmp_path / "b")


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.resolve("~/data") == str(tmp_path / "data")


def test_file_uri_becomes_a_local_path() -> None:
    assert paths.resolve("file:///srv/data%20set") == "/srv/data set"
    assert paths.resolve("file://localhost/srv/x") == "/srv/x"
    with pytest.raises(AutomlError, match="names host 'otherhost'"):
        paths.resolve("file://otherhost/srv/x")


@pytest.mark.parametrize("uri", ["s3://bucket/runs/a", "gs://bucket/x", "S3://Bucket/Key"])
def test_remote_uris_are_kept(uri: str) -> None:
    assert paths.resolve(uri) == uri
    assert paths.is_remote(uri) and paths.is_uri(uri)


def test_local_path_rejects_remote_and_unknown_schemes() -> None:
    with pytest.raises(AutomlError, match=r"--run-dir: 's3://b/r' is remote"):
        paths.local_path("s3://b/r", "--run-dir")
    with pytest.raises(AutomlError, match="unsupported URI scheme 'ftp'"):
        paths.resolve("ftp://host/x")
    with pytest.raises(AutomlError, match="empty path"):
        paths.resolve("  ")


def test_config_data_paths_and_weight_files_are_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w.pth").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [{name: test_resnet, weights: 'file:w.pth'}]\n"
                     "data: {path: images, val_path: ~/v.csv}\n")
    cfg = config.load("s.yaml")
    assert cfg.data.path == str(tmp_path / "images")
    assert cfg.data.val_path == os.path.expanduser("~/v.csv")
    assert cfg.backbones[0].weights == f"file:{tmp_path / 'w.pth'}"
    cfg = config.load(space, {"data.path": "file:///mnt/images"})
    assert cfg.data.path == "/mnt/images"
    assert config.load(space, {"data.path": "s3://bucket/images"}).data.path == "s3://bucket/images"


def test_bad_uri_in_config_is_a_config_problem(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [test_resnet]\ndata: {path: 'ftp://x/y'}\n")
    with pytest.raises(ConfigError, match=r"data\.path: unsupported URI scheme 'ftp'"):
        config.load(space)
