"""Rank the search's pretrained backbones before the first trial (LogME and k-NN accuracy on
their frozen, cached features), seed the first trials with the best, optionally keep the top
k. After the search, `transferability.ranking_quality` says how well it predicted them."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.config.schema import Config
from automl.config.spaces import largest
from automl.errors import root_cause
from automl.search import transferability
from automl.trial import features
from automl.trial.context import SearchContext, make_plan


def rank_backbones(cfg: Config, context: SearchContext, datasets: dict[str, dict[str, Any]],
                   log: Any) -> dict[str, dict[str, Any]]:
    """Scores per pretrained backbone label (best first), from one Ray task per backbone;
    empty when there is nothing to rank. A backbone whose extraction fails is left unscored
    (the search still tries it)."""
    import ray


    labels = [b.label for b in cfg.backbones if b.pretrained]
    if not cfg.search.rank_backbones or len(labels) < 2:
        return {}
    started = time.time()
    extract = ray.remote(num_cpus=1)(features.extract)
    params = {"unfreeze_fraction": 0.0, "head_lr": 1e-3, "weight_decay": 0.0,
              "batch_size": 64, "pooling": "mean"}
    if "max_length" in cfg.space:
        params["max_length"] = largest(cfg.space["max_length"])
    refs = {}
    for label in labels:
        plan = make_plan({**params, "backbone": label}, context).to_dict()
        variant = context.variant_of[label]
        location = features.feature_location(
            str(context.data_root), variant, plan,
            (features.RANK_TRAIN_ROWS, features.RANK_VAL_ROWS))
        data = datasets[variant]
        refs[label] = extract.remote(plan, data["train"], data["val"], location)
    scores: dict[str, dict[str, Any]] = {}
    for label, ref in refs.items():
        try:
            found = ray.get(ref)
        except Exception as exc:  # any backbone error: the search still tries the backbone
            log(f"  ranking: {label} left unscored: {root_cause(exc)}")
            continue
        scores[label] = {**transferability.score(found), "seconds": found["seconds"],
                         "cached": found["cached"], "examples": len(found["train"])}
    ranked = dict(sorted(scores.items(), key=lambda kv: -kv[1]["knn_accuracy"]))
    if ranked:
        log(_summary(ranked, time.time() - started))
    return ranked


def _summary(ranked: dict[str, dict[str, Any]], wall_s: float) -> str:
    first = next(iter(ranked.values()))
    spent = sum(s["seconds"] for s in ranked.values())
    cached = sum(bool(s["cached"]) for s in ranked.values())
    lines = [f"Backbone ranking in {wall_s:.0f} s ({spent:.0f} s of tasks, {cached} of "
             f"{len(ranked)} from the feature cache): frozen features of {first['examples']} "
             "training examples, k-NN accuracy on validation examples, LogME"]
    lines += [f"  {i}. {label}  k-NN {s['knn_accuracy']:.3f}  LogME {s['logme']:.3f}"
              for i, (label, s) in enumerate(ranked.items(), 1)]
    return "\n".join(lines)


def prune(cfg: Config, ranked: dict[str, dict[str, Any]], log: Any) -> Config:
    """Keep the `search.prune_backbones` best-ranked pretrained backbones (scratch baselines
    and unscored backbones stay)."""
    keep = cfg.search.prune_backbones
    if not keep or len(ranked) <= keep:
        return cfg
    dropped = list(ranked)[keep:]
    log(f"  search.prune_backbones: {keep}: left out {', '.join(dropped)}")
    return dataclasses.replace(cfg, backbones=tuple(b for b in cfg.backbones
                                                    if b.label not in dropped))


def seed_points(ranked: dict[str, dict[str, Any]], cfg: Config, count: int
                ) -> list[dict[str, Any]]:
    """The first trials (Tune's points_to_evaluate), TPE sampling what they leave out.

    One per best-ranked backbone still in the search, `count` of them; with
    `search.explore_first` one per unfreeze choice instead (ranges: low, middle, high), on
    the best-ranked pretrained backbones in turn; with `search.portfolio` the known-good
    recipes before them. Then the from-scratch baseline once, fully
    trained, when the space has one: the board's transfer gain is measured in every search
    (it may stop early like any trial).
    """
    searched = [label for label in ranked if label in {b.label for b in cfg.backbones}]
    pretrained = searched + [b.label for b in cfg.backbones
                             if b.pretrained and b.label not in searched]
    depths = _depth_choices(cfg.space.get("unfreeze_fraction"))
    points: list[dict[str, Any]] = [{"backbone": label} for label in searched][:count]
    if cfg.search.explore_first and depths and pretrained:
        points = [{"backbone": pretrained[i % len(pretrained)], "unfreeze_fraction": depth}
                  for i, depth in enumerate(depths)]
    if cfg.search.portfolio and pretrained:
        points = [*portfolio_points(cfg, pretrained[0]), *points]
    scratch = [b.label for b in cfg.backbones if not b.pretrained]
    trials = cfg.search.max_trials
    if scratch and trials != 1:
        baseline: dict[str, Any] = {"backbone": scratch[0]}
        if depths:
            baseline["unfreeze_fraction"] = max(depths)
        # Within the search's trial count, which the first trials may exceed.
        points = [*points[:trials - 1], baseline] if trials else [*points, baseline]
    return points


PORTFOLIO: tuple[dict[str, float], ...] = (
    {"unfreeze_fraction": 0.5, "head_lr": 3e-3, "backbone_lr": 3e-4},
    {"unfreeze_fraction": 1.0, "head_lr": 3e-3, "backbone_lr": 1e-4},
)
"""Known-good transfer recipes: the top half unfrozen with a head LR 10 × the backbone's, and
a full fine-tune with a low backbone LR (the usual starting points of fine-tuning guides)."""


def portfolio_points(cfg: Config, backbone: str) -> list[dict[str, Any]]:
    """`PORTFOLIO` on `backbone`, each value moved into the space (the nearest choice, or
    clipped to a range); knobs the space fixes are left to it."""
    points = []
    for recipe in PORTFOLIO:
        point: dict[str, Any] = {"backbone": backbone}
        for name, value in recipe.items():
            spec = cfg.space.get(name)
            if isinstance(spec, (FloatDistribution, IntDistribution)):
                point[name] = min(max(value, spec.low), spec.high)
            elif isinstance(spec, CategoricalDistribution):
                numbers = [c for c in spec.choices if isinstance(c, (int, float))]
                if numbers:
                    point[name] = min(numbers, key=lambda c: abs(float(c) - value))
        if point not in points:
            points.append(point)
    return points


def _depth_choices(spec: Any) -> list[float]:
    """The unfreeze fractions the first trials cover (none when it is fixed)."""
    if isinstance(spec, CategoricalDistribution):
        return [float(c) for c in spec.choices if isinstance(c, (int, float))]
    if isinstance(spec, FloatDistribution):
        return [spec.low, (spec.low + spec.high) / 2, spec.high]
    return []
