from __future__ import annotations

import optuna
import pytest

from automl.config import spaces


def test_range_rules_state_rule_and_value() -> None:
    with pytest.raises(ValueError, match="low"):
        spaces.parse_param("head_lr", {"low": 1.0, "high": 0.1})
    with pytest.raises(ValueError, match=r"must be <= 1, got 2"):
        spaces.parse_param("unfreeze_fraction", {"choices": [0.0, 2]})
    with pytest.raises(ValueError, match="whole number"):
        spaces.parse_param("batch_size", 3.5)


def test_linear_probe_does_not_sample_backbone_lr() -> None:
    space = {**{n: r.default for n, r in spaces.PARAM_RULES.items()},
             "unfreeze_fraction": optuna.distributions.CategoricalDistribution([0.0, 1.0]),
             "backbone_lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = spaces.sample_trial(trial, ["a:hub", "b:scratch"], space)
        seen.add(params["unfreeze_fraction"])
        assert ("backbone_lr" in params) == (params["unfreeze_fraction"] > 0)
        study.tell(trial, 0.0)
    assert seen == {0.0, 1.0}
