"""Search-space parameters: YAML specs → Optuna distributions → Optuna define-by-run sampling.

A parameter is either a fixed value (`batch_size: 32`), a range (`{low, high, log, step}`)
or a choice (`{choices: [...]}`). Ranges and choices become Optuna distributions, whose
constructors already check `low <= high`, `log` needing `low > 0`, and so on.

Unfreeze depth is searched as `unfreeze_fraction` (0 = linear probe ... 1 = full fine-tune),
so one search space can hold backbones with different numbers of layer groups: Optuna
refuses a parameter whose range changes between trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


@dataclass(frozen=True)
class ParamRule:
    """What values a known hyperparameter accepts, and its default when the space omits it."""

    default: Any
    kind: type
    lowest: float | None = None
    highest: float | None = None
    exclusive_low: bool = False
    doc: str = ""
    options: tuple[str, ...] = ()
    """For string parameters: the allowed values."""
    task: str | None = None
    """Only meaningful for this task (None: any)."""
    by_task: tuple[tuple[str, Any], ...] = ()
    """Task-specific defaults, where measurement chose differently per task."""

    def default_for(self, task: str) -> Any:
        """The default a space of `task` gets when it omits this parameter."""
        return dict(self.by_task).get(task, self.default)


PARAM_RULES: dict[str, ParamRule] = {
    "unfreeze_fraction": ParamRule(
        0.0, float, 0.0, 1.0, doc="fraction of trailing layer groups trained (0 = linear probe)"
    ),
    "head_lr": ParamRule(1e-3, float, 0.0, None, True, "learning rate of the new head"),
    "backbone_lr": ParamRule(
        1e-4, float, 0.0, None, True, "learning rate of the top backbone group"
    ),
    "layer_decay": ParamRule(
        1.0, float, 0.0, 1.0, True, "LR multiplier per group going down from the top"
    ),
    "weight_decay": ParamRule(0.0, float, 0.0, None, doc="AdamW weight decay"),
    "batch_size": ParamRule(32, int, 2.0, None, doc="per-worker batch size (>= 2: "
                            "training drops a last batch of one, BatchNorm needs two)"),
    "lp_ft_epochs": ParamRule(
        0, int, 0.0, None, doc="LP-FT: first epochs train the head only, then unfreeze"
    ),
    "max_length": ParamRule(128, int, 8.0, 4096.0, doc="max tokens per text", task="text"),
    "pooling": ParamRule("mean", str, options=("cls", "mean"), doc="text pooling", task="text"),
    # The recipe (automl.trial.recipe). Defaults measured on held-out data (../shared/FACTS.md):
    # warm-up + cosine cut a 3-epoch image fine-tune's error from 3.0 % to 1.4 %; on text a
    # 2-epoch linear decay lost 1.5 points to a constant LR.
    "lr_schedule": ParamRule("cosine", str, options=("cosine", "linear", "constant"),
                             by_task=(("text", "constant"),),
                             doc="per-step LR schedule after the warm-up"),
    "warmup": ParamRule(0.1, float, 0.0, 0.5, by_task=(("text", 0.0),),
                        doc="fraction of the trial's planned steps the LR rises from 0"),
    "min_lr_ratio": ParamRule(0.0, float, 0.0, 1.0,
                              doc="the decay's floor, as a fraction of each group's LR"),
    "label_smoothing": ParamRule(0.1, float, 0.0, 0.5, by_task=(("text", 0.0),),
                                 doc="cross-entropy label smoothing"),
    "ema_decay": ParamRule(0.0, float, 0.0, 0.99999,
                           doc="EMA of weights (0: off); the average is the trial's model"),
    "augment": ParamRule("none", str, options=("none", "flip", "trivialaugment", "randaugment"),
                         task="image", doc="training augmentation: flip only, or timm's "
                         "random-resized crop + TrivialAugment / RandAugment"),
    "randaugment_magnitude": ParamRule(9, int, 0.0, 30.0, task="image",
                                       doc="RandAugment's magnitude (augment: randaugment)"),
    "crop_scale": ParamRule(0.7, float, 0.01, 1.0, task="image",
                            doc="random-resized crop: smallest area kept (trivial/randaugment)"),
    "random_erasing": ParamRule(0.0, float, 0.0, 1.0, task="image",
                                doc="probability of erasing a random box (trivial/randaugment)"),
    "mixup": ParamRule(0.0, float, 0.0, None, task="image", doc="mixup alpha (0: off)"),
    "cutmix": ParamRule(0.0, float, 0.0, None, task="image", doc="cutmix alpha (0: off)"),
    "drop_path_rate": ParamRule(0.0, float, 0.0, 0.9, task="image",
                                doc="stochastic depth of the timm backbone"),
    "dropout": ParamRule(0.1, float, 0.0, 0.9, task="text",
                         doc="the encoder's hidden and attention dropout"),
}

# Parameters sampled only when the backbone is (partly) unfrozen.
_BACKBONE_ONLY = ("backbone_lr", "layer_decay", "lp_ft_epochs", "drop_path_rate", "dropout")
# Parameters that do nothing for a trial training only its head on cached frozen features.
_NOT_ON_CACHED_FEATURES = ("augment", "randaugment_magnitude", "crop_scale", "random_erasing",
                           "mixup", "cutmix", "ema_decay")
# Parameters that only act under some augmentation policies.
_POLICY_ONLY = {"randaugment_magnitude": ("randaugment",),
                "crop_scale": ("trivialaugment", "randaugment"),
                "random_erasing": ("trivialaugment", "randaugment")}


RECIPE_BEFORE: dict[str, Any] = {
    "lr_schedule": "constant", "warmup": 0.0, "min_lr_ratio": 0.0, "label_smoothing": 0.0,
    "ema_decay": 0.0, "randaugment_magnitude": 9, "crop_scale": 1.0, "random_erasing": 0.0,
    "mixup": 0.0, "cutmix": 0.0, "drop_path_rate": 0.0, "dropout": 0.1,
}
"""What every trial did before the recipe knobs existed (MiniLM's own dropout is 0.1)."""


def recipe_before(task: str, hflip: bool) -> dict[str, Any]:
    """The recipe values of a space written before the recipe existed (no `lr_schedule`):
    what its trials trained with, so a resumed search goes on the same way."""
    legacy = {k: v for k, v in RECIPE_BEFORE.items()
              if PARAM_RULES[k].task in (None, task)}
    if task == "image":
        legacy["augment"] = "flip" if hflip else "none"
    return legacy


def parse_param(name: str, spec: Any) -> BaseDistribution | Any:
    """Turn one YAML parameter spec into an Optuna distribution, or return a fixed value.

    Raises ValueError with a message that states the rule and the value received.
    """
    rule = PARAM_RULES[name]
    if isinstance(spec, dict):
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise ValueError(
                f"unknown field(s) {sorted(unknown)}; a range has low/high/log/step, "
                "a choice has choices"
            )
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"choices must be a non-empty list, got {choices!r}")
            for value in choices:
                _check_value(rule, value)
            return CategoricalDistribution(choices)
        if rule.kind is str:
            raise ValueError(f"a text parameter takes choices: {list(rule.options)}")
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"a range needs both low and high, got {spec}")
        low, high = spec["low"], spec["high"]
        _check_value(rule, low, "low")
        _check_value(rule, high, "high")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if rule.kind is int:
            return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        return FloatDistribution(float(low), float(high), log=log, step=step)
    _check_value(rule, spec)
    return spec


def _check_value(rule: ParamRule, value: Any, what: str = "value") -> None:
    if rule.kind is str:
        if value not in rule.options:
            raise ValueError(f"{what} must be one of {list(rule.options)}, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if rule.kind is int and not float(value).is_integer():
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if rule.lowest is not None:
        too_low = value <= rule.lowest if rule.exclusive_low else value < rule.lowest
        if too_low:
            sign = ">" if rule.exclusive_low else ">="
            raise ValueError(f"{what} must be {sign} {rule.lowest:g}, got {value!r}")
    if rule.highest is not None and value > rule.highest:
        raise ValueError(f"{what} must be <= {rule.highest:g}, got {value!r}")


def sample_trial(
    trial: optuna.trial.BaseTrial, backbones: list[str], space: dict[str, Any],
    feature_cache: bool = False,
) -> dict[str, Any]:
    """Optuna define-by-run: sample one trial's parameters.

    A parameter is only sampled where it acts, so TPE spends no budget on ones without
    effect: the backbone LR, layer decay and backbone regularizers when some backbone group
    is trained; augmentation and EMA not for a linear probe on cached features
    (`feature_cache`); a policy's own knobs only under that policy. Left out, `make_plan`
    writes the neutral value, so the board shows what ran.
    """
    params: dict[str, Any] = {"backbone": trial.suggest_categorical("backbone", backbones)}
    for name, spec in space.items():
        frozen = params.get("unfreeze_fraction", 1.0) == 0.0
        if name in _BACKBONE_ONLY and frozen:
            continue
        if name in _NOT_ON_CACHED_FEATURES and frozen and feature_cache:
            continue
        if name in _POLICY_ONLY and params.get("augment", "none") not in _POLICY_ONLY[name]:
            continue
        if isinstance(spec, BaseDistribution):
            params[name] = _suggest(trial, name, spec)
        else:
            params[name] = spec
    return params


def _suggest(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    assert isinstance(dist, CategoricalDistribution)
    return trial.suggest_categorical(name, list(dist.choices))


def allows(spec: Any, value: Any) -> bool:
    """True when a parameter `spec` (a distribution or a fixed value) can take `value`."""
    if isinstance(spec, CategoricalDistribution):
        return value in spec.choices
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(spec, IntDistribution) and not float(value).is_integer():
            return False
        return bool(spec.low <= value <= spec.high)
    return bool(spec == value)


def describe_spec(spec: Any) -> str:
    """`{a, b}`, `1e-05..0.01 log` or `fixed at value`: what a parameter can take."""
    if isinstance(spec, CategoricalDistribution):
        return "{" + ", ".join(str(c) for c in spec.choices) + "}"
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        return f"{spec.low:g}..{spec.high:g}{' log' if spec.log else ''}"
    return f"fixed at {spec!r}"


def largest(spec: Any) -> Any:
    """The largest value a parameter can take: its `high`, its largest choice, or itself."""
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        return spec.high
    if isinstance(spec, CategoricalDistribution):
        return max(spec.choices)  # type: ignore[type-var]
    return spec
