"""One training loop, two places to run it: a Ray Train worker group (multi-worker trials) and
the Tune trial's own process (single-worker trials). Same checkpoints, retention, restarts,
results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automl.errors import TrialFailed
from automl.trial import executors as trainer
from automl.trial import failures
from automl.trial.context import SearchContext
from automl.trial.plan import TrialPlan


def test_in_process_retry_rule() -> None:
    """In a trial's own process one error decides: ours and plain training-code errors fail
    the trial at once; storage/network hiccups and Ray's errors are retried."""
    from ray.exceptions import ActorDiedError, RaySystemError

    assert failures.is_deterministic_error(TrialFailed("training loss became nan"))
    assert failures.is_deterministic_error(RuntimeError("shape mismatch"))
    assert not failures.is_deterministic_error(OSError("When uploading: timed out"))
    assert not failures.is_deterministic_error(ActorDiedError())
    assert not failures.is_deterministic_error(RaySystemError("object lost"))


def test_tune_retries_only_trials_whose_process_was_lost(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """During a search Tune retries a trial whose process died (it resumes from its
    checkpoint), not one whose code raised (it had its retries in `fit_in_process`)."""
    from ray.exceptions import ActorDiedError, RayTaskError
    from ray.tune.execution.tune_controller import TuneController

    raised = RayTaskError("train", "Traceback ...", TrialFailed("training loss became nan"))
    assert failures.lost_process(ActorDiedError())
    assert not failures.lost_process(raised)

    seen: list[int] = []
    monkeypatch.setattr(TuneController, "_process_trial_failure",
                        lambda self, trial, exc: seen.append(trial.max_failures))
    recorder = TuneController._process_trial_failure
    with failures.tune_retries_lost_trials_only():
        for error in (ActorDiedError(), raised):
            trial = type("Trial", (), {"max_failures": 2})()
            TuneController._process_trial_failure(None, trial, error)  # type: ignore[arg-type]
    assert seen == [2, 0]
    assert TuneController._process_trial_failure is recorder  # put back after the search


def test_worker_keeps_best_and_latest_checkpoint(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Train's storage context and checkpoint manager do the work: the same layout and
    retention as a TorchTrainer, and a new worker (a restart) resumes from the latest."""
    from ray import tune

    from automl.trial.workers import InProcessWorker

    reported: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "report", lambda metrics: reported.append(metrics))
    worker = InProcessWorker({}, str(tmp_path), "trial_a", "val_accuracy", use_gpu=False)
    assert worker.latest_checkpoint() is None
    assert worker.count_start() == 0
    for epoch, acc in enumerate([0.5, 0.9, 0.7], 1):
        local = tmp_path / f"local{epoch}"
        local.mkdir()
        (local / "epoch.txt").write_text(str(epoch))
        worker.report({"epoch": epoch, "val_accuracy": acc}, local)
    kept = [p for p in (tmp_path / "trial_a").glob("checkpoint_*") if p.is_dir()]
    assert sorted((p / "epoch.txt").read_text() for p in kept) == ["2", "3"]  # best, latest
    assert (tmp_path / "trial_a" / "checkpoint_manager_snapshot.json").is_file()
    assert [m["epoch"] for m in reported] == [1, 2, 3]
    assert all(Path(m["checkpoint_path"]).parent == tmp_path / "trial_a" for m in reported)

    again = InProcessWorker({}, str(tmp_path), "trial_a", "val_accuracy", use_gpu=False)
    with again.latest_checkpoint().as_directory() as directory:
        assert (Path(directory) / "epoch.txt").read_text() == "3"
    assert again.count_start() == 1


def _static(tmp_path: Path, restarts: int = 2) -> SearchContext:
    return SearchContext.from_json({
        "max_restarts": restarts, "steps_per_epoch": None, "deadline": None,
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "use_gpu": False}})


def _plan() -> TrialPlan:
    return TrialPlan(task="image", backbone="test_resnet", weights="scratch", classes=("a", "b"),
                     preprocessing={}, unfreeze_fraction=1.0, head_lr=0.01, backbone_lr=0.001,
                     layer_decay=1.0, weight_decay=0.0, batch_size=8, epochs=1, seed=0)


def test_transient_errors_resume_own_errors_fail_and_stay_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import automl.trial.loop

    calls: list[str] = []

    def flaky(config: dict[str, Any], worker: Any) -> None:
        calls.append("run")
        if len(calls) == 1:
            raise OSError("storage timed out")

    monkeypatch.setattr(automl.trial.loop, "train_loop", flaky)
    trainer.fit_trial(_plan(), {}, _static(tmp_path), "flaky", str(tmp_path))
    assert calls == ["run", "run"]  # retried once, then finished

    def broken(config: dict[str, Any], worker: Any) -> None:
        calls.append("broken")
        raise ValueError("lr overflow")

    monkeypatch.setattr(automl.trial.loop, "train_loop", broken)
    with pytest.raises(TrialFailed, match="ValueError: lr overflow"):
        trainer.fit_trial(_plan(), {}, _static(tmp_path), "broken", str(tmp_path))
    assert calls.count("broken") == 1  # not retried
    # Tune restarts a trial whose process died; one that failed by itself fails at once.
    with pytest.raises(TrialFailed, match="lr overflow"):
        trainer.fit_trial(_plan(), {}, _static(tmp_path), "broken", str(tmp_path))
    assert calls.count("broken") == 1

    def always(config: dict[str, Any], worker: Any) -> None:
        calls.append("always")
        raise OSError("storage down")

    monkeypatch.setattr(automl.trial.loop, "train_loop", always)
    with pytest.raises(TrialFailed, match="storage down"):
        trainer.fit_trial(_plan(), {}, _static(tmp_path, restarts=1), "down", str(tmp_path))
    assert calls.count("always") == 2  # max_restarts: 1


@pytest.mark.integration
def test_both_executors_train_the_same(tmp_path: Path) -> None:
    """A one-worker trial in its trial process and in a Ray Train worker group: the same
    accuracy, loss, checkpoint layout and board columns."""
    import ray

    from automl.api import run_search
    from automl.config.parse import from_dict
    from tests.conftest import write_image_folder

    images = write_image_folder(tmp_path / "images", per_class=30)
    boards = {}
    try:
        for in_trial in (True, False):
            config = from_dict({
                "task": "image",
                "data": {"path": str(images), "val_fraction": 0.25, "image_size": 64,
                         "cache_dir": str(tmp_path / "cache")},
                "backbones": [{"name": "test_resnet", "weights": "scratch"}],
                "space": {"unfreeze_fraction": 1.0, "head_lr": 0.01, "backbone_lr": 0.001,
                          "batch_size": 8},
                "train": {"epochs": 2, "seed": 0},
                "search": {"num_samples": 1},
                "resources": {"workers_per_trial": 1, "cpus_per_worker": 1,
                              "single_worker_in_trial": in_trial},
            })
            run = tmp_path / f"run_{in_trial}"
            boards[in_trial] = run_search(config, run_dir=run, log=lambda _: None).leaderboard
            (trial,) = (run / "trials").iterdir()
            assert (trial / "checkpoint_manager_snapshot.json").is_file()
            assert 1 <= len(list(trial.glob("checkpoint_*/model.safetensors"))) <= 2
    finally:
        ray.shutdown()
    here, group = boards[True].iloc[0], boards[False].iloc[0]
    assert here["status"] == group["status"] == "finished"
    assert here["val_accuracy"] == group["val_accuracy"]
    assert here["val_loss"] == pytest.approx(group["val_loss"], rel=1e-5)
    assert here["restarts"] == group["restarts"] == 0
    for column in ("startup_s", "ray_startup_s", "setup_s", "checkpoint"):
        assert not _missing(here[column]) and not _missing(group[column])
    assert _missing(here["feature_cache"])  # layers unfrozen: the trial streams


def _missing(value: Any) -> bool:
    return value is None or value != value


@pytest.mark.integration
def test_linear_probes_share_cached_features(tmp_path: Path) -> None:
    """The first frozen trial on a backbone builds the feature cache next to the prepared
    data, the next reads it (a trial that unfreezes layers streams: see above)."""
    import ray

    from automl.api import run_search
    from automl.config.parse import from_dict
    from tests.conftest import write_image_folder

    images = write_image_folder(tmp_path / "images", per_class=30)
    config = from_dict({
        "task": "image",
        "data": {"path": str(images), "val_fraction": 0.25, "image_size": 64,
                 "cache_dir": str(tmp_path / "cache")},
        "backbones": [{"name": "test_resnet", "weights": "scratch"}],
        # The constant-LR recipe this check was calibrated with: 18 steps of a cosine
        # schedule leave a random-init backbone's head near chance on 12 images.
        "space": {"unfreeze_fraction": 0.0, "head_lr": {"low": 0.01, "high": 0.05},
                  "batch_size": 8, "lr_schedule": "constant", "warmup": 0.0,
                  "label_smoothing": 0.0},
        "train": {"epochs": 2, "seed": 0},
        "search": {"num_samples": 2, "seed": 0, "grace_period": 2},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1,
                      "max_concurrent_trials": 1},
    })
    try:
        board = run_search(config, run_dir=tmp_path / "run", log=lambda _: None).leaderboard
    finally:
        ray.shutdown()
    assert sorted(board["feature_cache"]) == ["built", "hit"]
    assert (board["status"] == "finished").all() and (board["unfreeze_depth"] == 0).all()
    assert board["val_accuracy"].min() > 0.5  # the head learned on cached features
    assert len(list((tmp_path / "cache").glob("**/features/probe-*.npz"))) == 1
