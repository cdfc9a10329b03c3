"""The promises of `automl.ownership` and friends, each tried the way a user could break it:
nothing automl did not write is deleted, replaced or executed."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from PIL import Image

from automl import ownership, paths, storage
from automl.cli import main
from automl.data import shard_cache as prepared_cache
from automl.data import shards as prepared
from automl.errors import AutomlError, DataError
from automl.runs.history import append_event, checkpoint_location, event, read_history
from automl.runs.layout import LOCK_FILE
from automl.runs.lock import RunLock
from tests.helpers import tiny_plan
from tests.test_storage import s3_server  # noqa: F401 - the moto fixture, shared


def _run_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    ownership.mark_run(root, str(root))
    (root / "trials.jsonl").write_text(event("start", "t1", params={}) + "\n")
    (root / "trials").mkdir()
    (root / "trials" / "ckpt.txt").write_text("a checkpoint")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny image checkpoint: enough for an export."""
    from automl.trial.checkpoints import save_checkpoint
    from automl.trial.steps import setup_trial

    plan = tiny_plan(["a", "b", "c"], backbone="test_efficientnet", epochs=1)
    ckpt = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(setup_trial(plan).model, plan, ckpt, val_accuracy=0.5, epoch=1)
    return ckpt


def _export(ckpt: Path, out: Path) -> None:
    from automl.export import export_checkpoint

    export_checkpoint(ckpt, out, formats=("safetensors",))


def test_export_never_lands_on_a_run_dir_or_inside_it(tmp_path: Path, checkpoint: Path,
                                                       capfd: pytest.CaptureFixture[str]
                                                       ) -> None:
    run = _run_dir(tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for out, why in ((run, "is a run dir"), (run / "trials", "lies inside run dir")):
        with pytest.raises(AutomlError, match=why):
            _export(checkpoint, out)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    # The CLI refuses before any work, with one line and exit 2.
    assert main(["export", str(run), "--out", str(run)]) == 2
    err = capfd.readouterr().err
    assert "is a run dir" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    _export(checkpoint, run / "export-mine")  # a run's export* folders are its exports
    assert (run / "export-mine" / "manifest.json").is_file()


def test_export_keeps_a_users_files(tmp_path: Path, checkpoint: Path) -> None:
    user = tmp_path / "model"
    user.mkdir()
    (user / "config.json").write_text("{}")  # looks like an HF model folder
    (user / "notes.txt").write_text("mine")
    with pytest.raises(AutomlError, match="is not an automl export"):
        _export(checkpoint, user)
    assert (user / "notes.txt").read_text() == "mine"
    # An earlier export is replaced, but not when a user's file was added to it.
    out = tmp_path / "export"
    _export(checkpoint, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AutomlError, match=r"notes\.txt"):
        _export(checkpoint, out)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    first = json.loads((out / "manifest.json").read_text())["created"]
    time.sleep(1.1)
    _export(checkpoint, out)
    assert json.loads((out / "manifest.json").read_text())["created"] != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no leftovers
    assert out.stat().st_mode & 0o755 == 0o755  # readable like any folder the user makes


def test_export_target_must_be_a_folder_in_an_existing_folder(tmp_path: Path,
                                                             checkpoint: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(AutomlError, match="is an existing file"):
        _export(checkpoint, tmp_path / "file.txt")
    with pytest.raises(AutomlError, match="does not exist; create it first"):
        _export(checkpoint, tmp_path / "missing" / "export")


def test_foreign_run_dir_with_a_pickle_is_never_unpickled(tmp_path: Path,
                                                          capfd: pytest.CaptureFixture[str]
                                                          ) -> None:
    proof = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {proof}",))

    for folder in ("old", "foreign"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.pkl").write_bytes(pickle.dumps(Payload()))
    (tmp_path / "foreign" / "config.pkl").rename(tmp_path / "foreign" / "data.pkl")
    assert main(["search", "--resume", str(tmp_path / "old")]) == 2
    _, err = capfd.readouterr()
    assert "older automl" in err and "space.yaml --run-dir NEW_DIR" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["search", "--resume", str(tmp_path / "foreign")]) == 2
    assert "not an automl run dir" in capfd.readouterr().err
    assert not proof.exists()


def test_a_new_search_never_starts_in_a_used_folder(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "run")
    with pytest.raises(AutomlError, match="already holds a search; continue it with"):
        ownership.check_new_run_dir(str(run))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(AutomlError, match="is not empty and is not an automl run dir"):
        ownership.check_new_run_dir(str(tmp_path / "mine"))
    ownership.check_new_run_dir(str(tmp_path / "new"))
    with pytest.raises(AutomlError, match="is an existing file; give a folder"):
        ownership.check_new_run_dir(str(tmp_path / "mine" / "a.txt"))
    (tmp_path / "claimed").mkdir()  # a search that stopped before it began
    ownership.mark_run(tmp_path / "claimed", str(tmp_path / "claimed"))
    ownership.check_new_run_dir(str(tmp_path / "claimed"))


def test_one_search_per_run_dir_and_stale_locks(tmp_path: Path) -> None:
    with RunLock(str(tmp_path)), pytest.raises(AutomlError, match="another search is running"):
        RunLock(str(tmp_path)).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    # A holder whose pid is dead on this host is stale; so is one whose heartbeat stopped.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    for holder in ({"host": socket.gethostname(), "pid": int(dead.stdout),
                    "heartbeat": time.time()},
                   {"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 300}):
        (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
        with RunLock(str(tmp_path)):
            assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_default_run_dir_names_do_not_collide() -> None:
    from automl import api
    from automl.config.parse import from_dict

    cfg = from_dict({"backbones": ["test_resnet"]}, source="demo.yaml")
    names = {api._default_run_dir(cfg, "/tmp/runs").location for _ in range(20)}
    assert len(names) == 20


def test_a_moved_run_reads_its_checkpoints_where_it_is_now() -> None:
    reported = "/old/place/run/trials/t1/checkpoint_000002"
    assert checkpoint_location(reported, "/new/run", "t1") == "/new/run/trials/t1/" \
        "checkpoint_000002"
    assert checkpoint_location("bkt/runs/r/trials/t1/c", "s3://bkt/moved", "t1") == \
        "s3://bkt/moved/trials/t1/c"


def test_torn_history_lines_are_skipped_and_appends_start_on_a_new_line(tmp_path: Path
                                                                        ) -> None:
    history = tmp_path / "trials.jsonl"
    history.write_text(event("start", "a", params={}) + "\n{\"event\": \"res\n"
                       + event("end", "a", error=None)[:-7])  # torn mid-file and at the end
    append_event(history, event("start", "b", params={}))
    read = read_history(history)
    assert read.torn == (2, 3)
    assert [(e["event"], e["trial_id"]) for e in read.events] == [("start", "a"),
                                                                  ("start", "b")]


def _fake_variant(directory: Path) -> None:
    """A prepared variant as `prepared._run_job` lays it out, two shards."""
    shards: dict[str, list[dict]] = {}
    for split in ("train", "val"):
        (directory / split).mkdir(parents=True)
        table = pa.table({"key": ["a", "b"], "label": [0, 1]})
        pq.write_table(table, directory / split / "000000.parquet")
        shards[split] = [{"file": "000000.parquet", "rows": 2,
                          "bytes": (directory / split / "000000.parquet").stat().st_size}]
    manifest = {"key": directory.name, "columns": ["label"], "train_rows": 2, "val_rows": 2,
                "skipped": 0, "skipped_examples": [], "seconds": 1.0, "shards": shards,
                "checksum": prepared_cache.checksum(shards)}
    (directory / prepared.MANIFEST).write_text(json.dumps(manifest))


def test_a_damaged_prepared_cache_is_rebuilt_not_used(tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]
                                                       ) -> None:
    good = tmp_path / "good"
    _fake_variant(good)
    assert prepared._cached(str(good)) is not None
    for name, damage in (
        ("truncated_shard", lambda d: (d / "val" / "000000.parquet").write_bytes(b"PAR1")),
        ("missing_shard", lambda d: (d / "train" / "000000.parquet").unlink()),
        ("empty_manifest", lambda d: (d / prepared.MANIFEST).write_text("")),
        ("edited_manifest", lambda d: (d / prepared.MANIFEST).write_text(
            (d / prepared.MANIFEST).read_text().replace('"train_rows": 2', '"train_rows": 3'))),
    ):
        _fake_variant(tmp_path / name)
        damage(tmp_path / name)
        assert prepared._cached(str(tmp_path / name)) is None, name
        assert "preparing it again" in capfd.readouterr().err


def test_two_searches_preparing_the_same_data_both_get_it(tmp_path: Path) -> None:
    """Each writes under its own staging name; the first rename wins, the second finds a
    whole variant in place and reuses it (its own copy goes)."""
    final = tmp_path / "variant"
    ours, theirs = (prepared_cache.staging_name(str(final)) for _ in range(2))
    assert ours != theirs
    for staging in (ours, theirs):
        _fake_variant(Path(staging))
    assert prepared_cache.publish(theirs, str(final))
    assert not prepared_cache.publish(ours, str(final))
    assert prepared._cached(str(final)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variant"]


def test_single_file_outputs_need_an_existing_folder(tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path / "run")
    for out, message in ((tmp_path / "nope" / "board.csv", "does not exist; create it"),
                         (tmp_path, "is a folder; give a file name")):
        assert main(["leaderboard", str(run), "--out", str(out)]) == 2
        err = capfd.readouterr().err
        assert message in err and "Traceback" not in err


def test_an_image_manifests_cache_key_covers_the_images_it_names(image_folder: Path) -> None:
    from automl.config.schema import DataConfig
    from automl.tasks import get_task

    rows = [f"{p.relative_to(image_folder)},{p.parent.name}"
            for p in sorted(image_folder.rglob("*.png"))]
    manifest = image_folder / "manifest.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    data = DataConfig(path=str(manifest))
    before = get_task("image").scan(data).fingerprint
    first = image_folder / rows[0].split(",")[0]
    Image.new("RGB", (32, 32), (255, 255, 255)).save(first)  # same name, new pixels
    os.utime(manifest, ns=(manifest.stat().st_atime_ns, manifest.stat().st_mtime_ns))
    assert get_task("image").scan(data).fingerprint != before


def test_a_changed_weights_file_gets_new_cached_features(tmp_path: Path) -> None:
    from automl.trial.features import feature_location

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    plan = {"backbone": "m", "weights": f"file:{weights}", "preprocessing": {},
            "max_length": None, "pooling": None}
    first = feature_location("/cache", "v", plan, (10, 5))
    weights.write_bytes(b"two")
    assert feature_location("/cache", "v", plan, (10, 5)) != first


def test_a_thin_strip_decodes_in_bounded_memory_and_16_bit_is_scaled(tmp_path: Path) -> None:
    from automl.tasks.image_files import load_image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (20000, 1), (200, 10, 10)).save(strip)
    assert strip.stat().st_size < 1000
    pixels = load_image(strip, 224, "bicubic", 0.875)
    assert pixels.shape == (224, 224, 3) and abs(int(pixels[..., 0].mean()) - 200) <= 2
    wide = tmp_path / "gray16.png"
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(wide)
    gray = load_image(wide, 32, "bilinear", 1.0)
    assert gray.min() < 10 and 100 < gray.mean() < 160 and gray.max() > 245  # not clipped


def test_a_manifest_naming_a_fifo_or_a_folder_is_an_error(tmp_path: Path) -> None:
    from automl.tasks.image_files import read_manifest

    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    for bad, kind in (("pipe.png", "a FIFO"), ("dir.png", "a folder")):
        (tmp_path / "m.csv").write_text(f"path,label\nok.png,a\n{bad},b\n")
        with pytest.raises(DataError, match=f"row 2: .*{bad} is {kind}"):
            read_manifest(str(tmp_path / "m.csv"), "path", "label")


def test_keys_with_dotdot_never_leave_their_folder() -> None:
    for bad in ("../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(AutomlError, match="would leave its folder"):
            paths.safe_relative(bad)
    assert paths.safe_relative("a/./b") == "a/b"


@pytest.mark.parametrize(("args", "message"), [
    (["--time-budget", "inf"], "must be a finite duration"),
    (["--time-budget", "nan"], "must be a finite duration"),
    (["--time-budget=-5m"], "expected a duration like 30m"),
])
def test_bad_budgets_are_one_line_errors(args: list[str], message: str, image_folder: Path,
                                         tmp_path: Path, capfd: pytest.CaptureFixture[str]
                                         ) -> None:
    for how in (["--data", str(image_folder)],
                [_space(tmp_path), "--data", str(image_folder)]):
        assert main(["search", *how, "--run-dir", str(tmp_path / "r"), *args]) == 2
        err = capfd.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def _space(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "space.yaml"
    path.write_text("backbones: [test_resnet]\n" + extra)
    return str(path)


@pytest.mark.parametrize(("extra", "message"), [
    ("train: {seed: -1}\n", "train.seed: must be >= 0"),
    ("search: {seed: -3}\n", "search.seed: must be >= 0"),
    ("data: {seed: -2}\n", "data.seed: must be >= 0"),
    ("space: {batch_size: 1}\n", "space.batch_size: value must be >= 2"),
    ("train:\n  epochs: 2\n  epochs: 3\n", "key 'epochs' appears twice"),
])
def test_bad_values_are_config_errors(extra: str, message: str, tmp_path: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", _space(tmp_path, extra)]) == 2
    assert message in capfd.readouterr().err


def test_predict_says_a_missing_table_is_missing(tmp_path: Path) -> None:
    from automl.tasks import get_task

    with pytest.raises(DataError, match=r"'missing\.csv': no such file"):
        get_task("text").read_inputs(["missing.csv"], {})
    assert get_task("text").read_inputs(["a fine film.csv"], {}) == ["a fine film.csv"]


def test_ray_internals_have_the_signatures_automl_uses() -> None:
    from automl import ray_internals
    from automl.trial import workers as worker

    assert ray_internals.signature_problems() == []
    assert worker.in_process_supported()
    private = subprocess.run(["grep", "-rlE", r"ray\._private|_internal\.|ray\.train\.v2\._",
                              "automl"], capture_output=True, text=True,
                             cwd=Path(__file__).parents[1]).stdout.split()
    assert private == ["automl/ray_internals.py"], private


@pytest.mark.integration
def test_embedded_ray_needs_its_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client without the token that reaches the embedded Ray's GCS port (through any
    interface: Ray 2.60 binds to all) cannot run a task; the token file is private."""
    import ray

    from automl.search import ray_session

    ray.shutdown()
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setattr(ray_session, "TOKEN_FILE", tmp_path / "cache" / "ray_auth_token")
    try:
        ray_session.init_ray(None)
        gcs = ray.get_runtime_context().gcs_address
        assert ray_session.TOKEN_FILE.stat().st_mode & 0o777 == 0o600
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        code = (f"import ray; ray.init(address={gcs!r}); "
                "print('RAN', ray.get(ray.remote(lambda: 1).remote()))")
        for mode in ("disabled", "token"):
            attempt = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, timeout=120, env={**env, "RAY_AUTH_MODE": mode})
            assert attempt.returncode != 0 and "RAN" not in attempt.stdout
            assert "Authentication" in attempt.stderr or "auth" in attempt.stderr.lower()
    finally:
        ray.shutdown()


def test_a_remote_prefix_with_sub_prefixes_is_not_an_export(s3_server: str) -> None:  # noqa: F811
    storage.write_text(f"{s3_server}/shared/team/a/data.csv", "x")
    storage.write_text(f"{s3_server}/shared/team/b/c/model.bin", "y")
    with pytest.raises(AutomlError, match="is not an automl export"):
        ownership.check_export_target(f"{s3_server}/shared/team")
    assert storage.read_text(f"{s3_server}/shared/team/b/c/model.bin") == "y"
    # A manifest on S3 naming images on S3: each image's size goes into the cache key.
    from automl.tasks.image_files import read_manifest

    for name, colour in (("a.png", 0), ("b.png", 255)):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (colour,) * 3).save(buffer, format="PNG")
        storage.write_bytes(f"{s3_server}/imgs/{name}", buffer.getvalue())
    storage.write_text(f"{s3_server}/imgs/m.csv", "path,label\na.png,x\nb.png,y\nc.png,y\n")
    stats = read_manifest(f"{s3_server}/imgs/m.csv", "path", "label").stats
    assert [s[0] > 0 for s in stats] == [True, True, False]  # c.png is missing
    # A crafted key with `..` in it never lands outside the folder a download writes to.
    import boto3

    boto3.client("s3").put_object(Bucket="bkt", Key="crafted/a/../../../escaped.txt", Body=b"z")
    fs, path = storage.filesystem(f"{s3_server}/crafted")
    keys = [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))]
    assert any(".." in k for k in keys), keys  # the store keeps the key as written
    with pytest.raises(AutomlError, match="would leave its folder"):
        storage.download(f"{s3_server}/crafted", Path("/tmp") / "automl-crafted" / "x")
    assert not Path("/tmp/escaped.txt").exists()



TINY = """
task: image
data: {val_fraction: 0.25, image_size: 32}
backbones: [{name: test_resnet, weights: scratch}]
space: {unfreeze_fraction: 1.0, head_lr: 0.01, backbone_lr: 0.001, batch_size: 8}
train: {epochs: 1, seed: 0}
search: {num_samples: 1, seed: 0, grace_period: 1}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1}
"""


@pytest.mark.integration
def test_a_moved_run_dir_is_read_exported_and_resumed_where_it_is(
        image_folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Tune's experiment state holds the old absolute paths: `Tuner.restore` from the new
    place must still work, and nothing may be written back to the old place."""
    import shutil

    import ray

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY)
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    try:
        assert main(["search", str(space), "--data", str(image_folder), "--run-dir",
                     str(first)]) == 0
        # The same run dir again: a second search is refused (resume it instead).
        assert main(["search", str(space), "--data", str(image_folder), "--run-dir",
                     str(first)]) == 2
        assert "already holds a search" in capfd.readouterr().err
        moved.parent.mkdir()
        shutil.move(str(first), str(moved))
        assert main(["leaderboard", str(moved)]) == 0
        assert main(["report", str(moved)]) == 0
        assert main(["export", str(moved), "--out", str(tmp_path / "exp"),
                     "--format", "safetensors"]) == 0
        assert (tmp_path / "exp" / "model.safetensors").is_file()
        lines = (moved / "trials.jsonl").read_text().count("\n")
        assert main(["search", "--resume", str(moved)]) == 0
        out = capfd.readouterr().out
        assert "finished" in out
        assert not first.exists(), sorted(p.name for p in first.rglob("*"))
        assert (moved / "trials.jsonl").read_text().count("\n") >= lines
        assert json.loads((moved / "state.json").read_text())["state"] == "finished"
    finally:
        ray.shutdown()


class _Executes:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch executed-by-unpickling",))


def test_a_checkpoints_train_state_is_never_unpickled_beyond_tensors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train_state.pt` is read with `weights_only=True`: a state file someone replaced with
    an object that runs code on load is refused, and nothing runs."""
    import pickle

    import torch

    from automl.trial.checkpoints import TRAIN_STATE_FILE, load_train_state, save_checkpoint
    from automl.trial.steps import setup_trial

    monkeypatch.chdir(tmp_path)
    plan = tiny_plan(["a", "b"])
    setup = setup_trial(plan)
    save_checkpoint(setup.model, plan, tmp_path)
    torch.save({"optimizer": _Executes()}, tmp_path / TRAIN_STATE_FILE)
    with pytest.raises(pickle.UnpicklingError):
        load_train_state(tmp_path, setup.model, setup.optimizer)
    assert not (tmp_path / "executed-by-unpickling").exists()


def test_a_claimed_run_dir_goes_again_only_while_it_holds_nothing_but_the_marker(
        tmp_path: Path) -> None:
    from automl.ownership import RUN_MARKER, mark_run, unclaim_untouched

    run = tmp_path / "run"
    run.mkdir()
    mark_run(run, str(run))
    (run / "space.yaml").write_text("x")
    assert not unclaim_untouched(run, str(run), created=True)
    assert (run / RUN_MARKER).is_file() and (run / "space.yaml").is_file()
    (run / "space.yaml").unlink()
    # An empty folder the user gave as --run-dir stays; only the marker goes.
    assert unclaim_untouched(run, str(run), created=False)
    assert run.is_dir() and not any(run.iterdir())
    mark_run(run, str(run))
    assert unclaim_untouched(run, str(run), created=True) and not run.exists()
    assert not unclaim_untouched(run, str(run), created=True)  # gone: nothing to do
