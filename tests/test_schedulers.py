"""`search.rung_tolerance`: ASHA's rung decisions with differences within noise as ties."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from automl.config import parse
from automl.search.schedulers import TolerantASHA
from automl.search.tune import make_scheduler


def _decisions(scheduler: TrialScheduler, scores: list[float], examples: int = 400
               ) -> list[str]:
    decisions = []
    for n, score in enumerate(scores):
        trial = SimpleNamespace(trial_id=f"t{n}")
        scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
        decisions.append(scheduler.on_trial_result(None, trial, {  # type: ignore[arg-type]
            "epoch": 1, "val_accuracy": score, "val_examples": examples}))
    return decisions


def test_a_trial_within_one_standard_error_of_the_cutoff_goes_on() -> None:
    settings = {"time_attr": "epoch", "metric": "val_accuracy", "max_t": 3,
                "grace_period": 1, "reduction_factor": 2}
    scores = [0.80, 0.79, 0.70]  # SE of 0.80 on 400 examples: 0.02
    plain = _decisions(ASHAScheduler(mode="max", **settings), scores)
    tolerant = _decisions(TolerantASHA(tolerance=1.0, **settings), scores)
    assert plain == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.STOP]
    assert tolerant == [TrialScheduler.CONTINUE, TrialScheduler.CONTINUE, TrialScheduler.STOP]
    # On 40,000 examples the SE is 0.002: 0.79 is no longer a tie.
    assert _decisions(TolerantASHA(tolerance=1.0, **settings), scores, 40_000)[1] == \
        TrialScheduler.STOP


def test_the_search_builds_it_when_asked() -> None:
    raw = {"backbones": ["test_resnet"], "train": {"epochs": 3}}
    assert type(make_scheduler(parse.from_dict(raw))) is ASHAScheduler
    tolerant = make_scheduler(parse.from_dict({**raw, "search": {"rung_tolerance": 1.5}}))
    assert isinstance(tolerant, TolerantASHA) and tolerant.tolerance == 1.5
    assert tolerant.milestones == [1, 2]
