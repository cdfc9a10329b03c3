"""A config back to YAML (`RUN/space.yaml`, which `automl search` re-runs) and in a few lines
(what a search prints before it starts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from automl.config.durations import format_duration
from automl.config.schema import Config
from automl.config.spaces import describe_spec
from automl.ownership import write_atomic

_SECTIONS = ("data", "train", "search", "resources", "tracking")


def to_raw(cfg: Config) -> dict[str, Any]:
    """The mapping `config.from_dict` turns back into `cfg` (every value spelled out)."""
    raw: dict[str, Any] = {
        "task": cfg.task,
        "backbones": [_Flow(name=b.name, weights=b.weights) for b in cfg.backbones],
        "space": {name: _spec(value) for name, value in cfg.space.items()},
    }
    if cfg.first_trials:
        raw["first_trials"] = [_Flow(point) for point in cfg.first_trials]
    for section in _SECTIONS:
        raw[section] = dataclasses.asdict(getattr(cfg, section))
    if cfg.preset is not None:
        raise ValueError("fit the preset first (presets.fit_preset): its result is the space")
    return raw


class _Flow(dict[str, Any]):
    """A mapping written on one line: `{name: x, weights: package}`."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data, flow_style=True))


def _spec(value: Any) -> Any:
    if isinstance(value, CategoricalDistribution):
        return _Flow(choices=list(value.choices))
    if isinstance(value, (FloatDistribution, IntDistribution)):
        spec = _Flow(low=value.low, high=value.high)
        if value.log:
            spec["log"] = True
        if value.step is not None and not (isinstance(value, IntDistribution)
                                           and value.step == 1):
            spec["step"] = value.step
        return spec
    assert not isinstance(value, BaseDistribution), value
    return value


def write_space(cfg: Config, path: Path, header: str) -> Path:
    """Write `cfg` as a search space YAML that reproduces it, under a comment header."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    text = yaml.dump(to_raw(cfg), Dumper=_Dumper, sort_keys=False, width=100)
    write_atomic(path, comment + text)
    return path


def describe(cfg: Config) -> list[str]:
    """The resolved space in a few lines: backbones, searched knobs, epochs and stopping."""
    searched = [f"{name} {describe_spec(value)}" for name, value in cfg.space.items()
                if isinstance(value, BaseDistribution)]
    fixed = [f"{name}={value}" for name, value in cfg.space.items()
             if not isinstance(value, BaseDistribution)]
    search, train = cfg.search, cfg.train
    stop = f"{search.max_trials} trials" if search.max_trials else "trials"
    if search.budget_s is not None:
        budget = format_duration(search.budget_s)
        stop = (f"at most {stop} in {budget}" if search.max_trials
                else f"trials until {budget} is spent")
    steps = f" of {train.steps_per_epoch} steps" if train.steps_per_epoch else ""
    size = f", images {cfg.data.image_size}px" if cfg.task == "image" and cfg.data.image_size \
        else ""
    device = "GPU" if cfg.resources.use_gpu else "CPU"
    lines = [
        f"backbones ({len(cfg.backbones)}): " + ", ".join(b.label for b in cfg.backbones),
        "searched: " + ("; ".join(searched) or "nothing (fixed values only)"),
        "fixed: " + (", ".join(fixed) or "-"),
        f"train: {train.epochs} epoch(s){steps} max, {train.precision} on {device}, "
        f"{cfg.resources.workers_per_trial} worker(s) × {cfg.resources.cpus_per_worker:g} "
        f"CPU{size}",
        f"search: {'TPE' if search.sampler == 'tpe' else 'random'} + "
        + (f"ASHA (grace {search.grace_period}, keep 1/{search.reduction_factor})"
           if search.scheduler == "asha" else "FIFO (every trial runs all its epochs)")
        + f", {stop}",
    ]
    if cfg.first_trials:
        shown = ["{" + ", ".join(f"{k}={v}" for k, v in p.items()) + "}"
                 for p in cfg.first_trials[:3]]
        more = f" … {len(cfg.first_trials) - 3} more" if len(cfg.first_trials) > 3 else ""
        lines.append(f"first trials ({len(cfg.first_trials)}): " + "; ".join(shown) + more)
    return lines
