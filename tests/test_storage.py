"""Run storage on paths and on S3: unit tests of the location helpers, and a whole search whose
data, prepared shards, checkpoints, board and export live on a local S3 server (moto)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from automl import storage
from automl.cli import main
from automl.runs.location import RunDir


def test_join_parent_name_keep_uri_options() -> None:
    uri = "s3://bkt/runs/a?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.join(uri, "trials", "x") == (
        "s3://bkt/runs/a/trials/x?endpoint_override=127.0.0.1:9000&scheme=http")
    assert storage.parent(uri) == "s3://bkt/runs?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.name(uri) == "a"
    assert storage.to_location("bkt/runs/a/trials/c1", uri).startswith("s3://bkt/runs/a/trials/c1?")
    assert storage.join("/data/run", "trials") == "/data/run/trials"
    assert storage.to_location("/data/run/x", "/data/run") == "/data/run/x"


def test_local_storage_round_trip(tmp_path: Path) -> None:
    base = str(tmp_path / "store")
    storage.write_text(storage.join(base, "a", "b.txt"), "hello")
    assert storage.read_text(storage.join(base, "a", "b.txt")) == "hello"
    assert storage.list_files(storage.join(base, "a"), ".txt") == [storage.join(base, "a", "b.txt")]
    assert storage.list_files(storage.join(base, "missing")) == []
    assert storage.usage(base) == 5
    storage.remove(storage.join(base, "a"))
    assert not storage.exists(storage.join(base, "a"))
    run = RunDir.at(tmp_path / "run")
    assert not run.remote and run.local == tmp_path / "run"


def test_unwritable_storage_is_a_clear_error(tmp_path: Path) -> None:
    from automl.errors import AutomlError

    with pytest.raises(AutomlError, match=r"run dir /proc/automl: cannot write there"):
        storage.check_writable("/proc/automl", "run dir")
    storage.check_writable(str(tmp_path / "new" / "run"), "run dir")  # created as needed
    assert list((tmp_path / "new" / "run").iterdir()) == []


def test_remote_run_dir_has_a_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr(storage, "CACHE_ROOT", tmp_path / "cache")
    run = RunDir.at("s3://bkt/runs/r1")
    assert run.remote and run.location == "s3://bkt/runs/r1"
    assert run.local.parent == tmp_path / "cache" / "runs" and run.local.name.startswith("r1-")
    assert run.uri("tune") == "s3://bkt/runs/r1/tune"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with bucket `bkt`; pyarrow (and so Ray) reach it through
    AWS_ENDPOINT_URL, which the embedded Ray's processes inherit."""
    import ray

    ray.shutdown()  # Ray processes must start with the endpoint in their environment
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        import boto3

        boto3.client("s3").create_bucket(Bucket="bkt")
        yield "s3://bkt"
    finally:
        ray.shutdown()
        server.terminate()
        server.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32}
backbones: [{name: test_efficientnet, weights: scratch}]
space:
  unfreeze_fraction: 0.0
  head_lr: {low: 0.01, high: 0.05, log: true}
  batch_size: 8
train: {epochs: 2, seed: 0}
search: {num_samples: 2, seed: 0}
resources: {workers_per_trial: 1, cpus_per_worker: 1}
"""


@pytest.mark.integration
def test_search_export_predict_resume_on_s3(
    s3_server: str, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from automl.api import leaderboard
    from automl.config.schema import DataConfig
    from automl.data.catalog import VAL
    from automl.export import predict
    from automl.tasks import get_task

    monkeypatch.setattr(storage, "CACHE_ROOT", tmp_path / "cache")
    storage.upload(image_folder, f"{s3_server}/data/images")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "space.yaml").write_text(SPACE)
    assert main(["search", "space.yaml", "--data", f"{s3_server}/data/images",
                 "--run-dir", "s3://no-such-bucket/run"]) == 2  # before Ray starts
    assert "no-such-bucket" in capsys.readouterr().err
    assert main(["search", "space.yaml", "--data", f"{s3_server}/data/images",
                 "--storage", f"{s3_server}/runs"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"Run dir: (s3://\S+)", out)
    assert match, out
    run = match.group(1)
    assert run.startswith(f"{s3_server}/runs/space-")
    assert list(work.iterdir()) == [work / "space.yaml"]  # nothing of the run is local

    for kept in (".automl-run.json", "space.yaml", "leaderboard.csv", "summary.json",
                 "logs/ray.log", "trials.jsonl", "state.json", "report.html",
                 "export/model.safetensors", "export/config.json"):
        assert storage.is_file(storage.join(run, kept)), kept
    prepared = [f for f in storage.list_files(storage.join(s3_server, "runs", "prepared-data"))]
    assert prepared == []  # only folders at that level: <data fingerprint>/<variant>/...
    assert storage.usage(storage.join(s3_server, "runs", "prepared-data")) > 0

    board = leaderboard(run)  # rebuilt from the run's trials.jsonl on S3
    assert len(board) == 2 and set(board["status"]) <= {"finished", "stopped"}
    assert main(["report", run, "--out", f"{s3_server}/reports/r.html"]) == 0
    assert "<svg" in storage.read_text(f"{s3_server}/reports/r.html")
    assert board["checkpoint"].str.startswith(f"{s3_server}/runs/").all()
    best = board.iloc[0]
    assert storage.is_file(storage.join(best["checkpoint"], "train_state.pt"))

    # Export the best trial to another bucket prefix and predict from there: the predictions
    # on the validation images (read from S3 too) reproduce the board's accuracy.
    assert main(["export", run, "--out", f"{s3_server}/shipped/best"]) == 0
    catalog = get_task("image").scan(DataConfig(path=f"{s3_server}/data/images",
                                                val_fraction=0.25))
    rows = [i for i in range(len(catalog.labels)) if catalog.split[i] == VAL]
    predictions = predict(f"{s3_server}/shipped/best", [catalog.locations[i] for i in rows])
    truth = [catalog.classes[catalog.labels[i]] for i in rows]
    accuracy = sum(p.label == t for p, t in zip(predictions, truth, strict=True)) / len(rows)
    assert accuracy == pytest.approx(best["val_accuracy"])
    capsys.readouterr()
    assert main(["predict", f"{s3_server}/shipped/best", catalog.locations[rows[0]]]) == 0
    assert capsys.readouterr().out.split("\t")[1] == predictions[0].label

    # Resume from the URI: Tune restores the experiment from S3, nothing is re-run.
    assert main(["search", "--resume", run]) == 0
    again = leaderboard(run)
    pd.testing.assert_frame_equal(
        board.set_index("trial_id")[["val_accuracy", "epochs"]].sort_index(),
        again.set_index("trial_id")[["val_accuracy", "epochs"]].sort_index())


def test_timm_weights_from_s3_load_strictly(s3_server: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`weights: file:s3://...` is downloaded once per node into the automl cache."""
    import timm
    import torch
    from safetensors.torch import save_file

    from automl.backbones.timm_backbone import create_timm_model

    monkeypatch.setattr(storage, "CACHE_ROOT", tmp_path / "cache")
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", pretrained=False)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    storage.upload(tmp_path / "w.safetensors", f"{s3_server}/weights/w.safetensors")
    storage.cached_copy.cache_clear()
    model = create_timm_model("test_resnet", f"file:{s3_server}/weights/w.safetensors", 3)
    weights = source.state_dict()
    stem = next(k for k in weights if k.endswith("weight"))
    assert torch.equal(model.state_dict()[stem], weights[stem])
    assert list((tmp_path / "cache" / "remote").rglob("w.safetensors"))
