from __future__ import annotations

import optuna
import pytest

from automl import spaces


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


def test_seed_recipe_is_a_partial_fine_tune_in_the_middle_of_the_space() -> None:
    parse = spaces.parse_param
    space = {"unfreeze_fraction": parse("unfreeze_fraction", {"choices": [0.0, 0.25, 1.0]}),
             "head_lr": parse("head_lr", {"low": 1e-4, "high": 1e-2, "log": True}),
             "backbone_lr": parse("backbone_lr", {"low": 0.001, "high": 0.003}),
             "batch_size": parse("batch_size", {"choices": [64, 16, 32]}),
             "lp_ft_epochs": parse("lp_ft_epochs", {"low": 0, "high": 3}),
             "pooling": parse("pooling", {"choices": ["cls", "mean"]}),
             "weight_decay": 0.01}
    recipe = spaces.seed_recipe(space)
    assert recipe == {"unfreeze_fraction": 0.25, "head_lr": pytest.approx(1e-3),
                      "backbone_lr": pytest.approx(0.002), "batch_size": 32,
                      "lp_ft_epochs": 2, "pooling": "mean"}
    ranged = spaces.seed_recipe({"unfreeze_fraction": parse("unfreeze_fraction",
                                                            {"low": 0.5, "high": 1.0})})
    assert ranged == {"unfreeze_fraction": 0.5}
    probe_only = {**space, "unfreeze_fraction": parse("unfreeze_fraction", {"choices": [0.0]})}
    assert set(spaces.seed_recipe(probe_only)) == {"unfreeze_fraction", "head_lr",
                                                   "batch_size", "pooling"}
    # Every value is one the sampler could have drawn: enqueued, it is used as given.
    study = optuna.create_study()
    study.enqueue_trial({"backbone": "a:hub", **recipe})
    assert spaces.sample_trial(study.ask(), ["a:hub"], space) == {
        "backbone": "a:hub", **recipe, "weight_decay": 0.01}
