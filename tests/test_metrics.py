"""Epoch metrics (`automl.trial.metrics`): one name per metric from the trial to the board."""

from __future__ import annotations

from automl.runs.leaderboard import COLUMNS
from automl.trial.metrics import EpochMetrics, Timings, current_names


def _metrics(**changes: object) -> EpochMetrics:
    values = dict(epoch=1, val_accuracy=0.5, val_loss=0.7, val_examples=10, train_loss=0.9,
                  train_accuracy=0.6, train_examples=30, samples_per_s=100.0,
                  peak_memory_mb=900.0, unfreeze_depth=2, layer_groups=6,
                  trainable_params=10, total_params=100, worker_nodes="10.0.0.1/abc",
                  restarts=0, timings=Timings(train_time_s=1.5, data_time_s=0.5,
                                              eval_time_s=0.25, train_samples=30))
    return EpochMetrics(**{**values, **changes})  # type: ignore[arg-type]


def test_a_result_holds_every_metric_by_its_board_name_and_leaves_unset_ones_out() -> None:
    result = _metrics().to_dict()
    assert result["train_time_s"] == 1.5 and result["eval_time_s"] == 0.25
    assert not {"latency_ms", "feature_cache", "out_of_time", "checkpoint_time_s",
                "features_s", "first_step_at", "timings"} & set(result)
    timing_columns = {"train_time_s", "data_time_s", "eval_time_s", "checkpoint_time_s"}
    assert timing_columns <= set(COLUMNS)  # the board shows them under the same names
    later = _metrics(latency_ms=3.0, feature_cache="hit", out_of_time=True).to_dict()
    assert later["latency_ms"] == 3.0 and later["feature_cache"] == "hit"
    assert later["out_of_time"] is True


def test_histories_and_checkpoints_of_older_runs_read_under_the_current_names() -> None:
    old = {"epoch": 2, "train_s": 4.0, "data_s": 1.0, "eval_s": 0.5, "checkpoint_s": 0.1}
    assert current_names(old) == {"epoch": 2, "train_time_s": 4.0, "data_time_s": 1.0,
                                  "eval_time_s": 0.5, "checkpoint_time_s": 0.1}
    assert current_names({"train_s": 1.0, "train_time_s": 2.0}) == {"train_time_s": 2.0}
    timings = Timings.from_dict({**old, "setup_s": 0.3, "unknown": 1})
    assert timings.train_time_s == 4.0 and timings.setup_s == 0.3
    assert Timings.from_dict(timings.to_dict()) == timings
