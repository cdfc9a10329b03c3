"""Typed, frozen search configuration: `load(path, overrides)` validates without building anything.

Every problem is collected with its YAML key path and reported in one `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from automl import paths
from automl.backbones.registry import check_weights
from automl.config import spaces
from automl.config.schema import (
    CLASS_WEIGHTS,
    METRICS,
    SAMPLERS,
    SCHEDULERS,
    BackboneChoice,
    Config,
    DataConfig,
    PresetConfig,
    ResourcesConfig,
    SearchConfig,
    TrackingConfig,
    TrainConfig,
)
from automl.errors import AutomlError, ConfigError
from automl.tasks import TASKS


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` and `1.0e12` as floats (YAML 1.2), not strings,
    and refuses a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line "
                    f"{seen[key] + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?\.(?:inf|Inf|INF)$"
               r"|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)

_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "search": SearchConfig,
    "resources": ResourcesConfig,
    "tracking": TrackingConfig,
}
_TOP_KEYS = ("task", "backbones", "space", "first_trials", *_SECTIONS, "preset")


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML search space, apply `section.key` overrides and validate it all at once."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(str(path), ["file not found; pass the path of a search space YAML"])
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}".replace("\n", " ")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["the top level must be a mapping of sections"])
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if value is None:
            continue
        if raw.get(section) is None:  # `data:` with nothing under it
            raw[section] = {}
        if isinstance(raw[section], dict):  # otherwise from_dict reports the section
            raw[section][key] = value
    return from_dict(raw, source=str(path))


def from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a config mapping (as read from YAML); raise ConfigError listing every problem."""
    problems: list[str] = []
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown section{_suggest(key, _TOP_KEYS)}")
    task = raw.get("task", "image")
    if task not in TASKS:
        problems.append(f"task: must be one of {list(TASKS)}, got {task!r}")
    sections = {n: _section(cls, raw.get(n), n, problems) for n, cls in _SECTIONS.items()}
    sections["data"] = _resolve_data_paths(sections["data"], problems)
    backbones = _backbones(raw.get("backbones"), task, problems)
    space = _space(raw.get("space") or {}, task, problems)
    preset = _preset(raw["preset"], task, problems) if raw.get("preset") is not None else None
    first = _first_trials(raw.get("first_trials"), backbones, space, problems)
    _check_values(sections, problems)
    if task == "image" and "flip" in _values(space.get("augment")) and not sections["train"].hflip:
        problems.append("space.augment: flip mirrors training images but train.hflip is false "
                        "(set train.hflip: true if a mirror image keeps its class)")
    if problems:
        raise ConfigError(source, problems)
    return Config(task=task, backbones=backbones, space=space, preset=preset, source=source,
                  first_trials=first, **sections)


def _values(spec: Any) -> list[Any]:
    """The values a space entry can take: a choice's choices, or the fixed value."""
    choices = getattr(spec, "choices", None)
    return list(choices) if choices is not None else [spec]


def _preset(raw: Any, task: str, problems: list[str]) -> PresetConfig | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        problems.append("preset: must be a mapping with a name (see search_spaces/presets/)")
        return None
    for key in set(raw) - {"name", "examples_per_epoch", "gpu"}:
        problems.append(f"preset.{key}: unknown key; known: name, examples_per_epoch, gpu")
    per_epoch = raw.get("examples_per_epoch") or {}
    if not isinstance(per_epoch, dict) or set(per_epoch) - {"cpu", "gpu"} or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
            for v in per_epoch.values()):
        problems.append(f"preset.examples_per_epoch: must map cpu / gpu to a count >= 1 or "
                        f"null, got {per_epoch!r}")
        per_epoch = {}
    gpu = dict(raw.get("gpu") or {})
    backbones = gpu.pop("backbones", None)
    rules = {"image_size": lambda v: v is None or (isinstance(v, int) and v >= 16),
             "precision": lambda v: v in ("fp32", "bf16")}
    for key, value in gpu.items():
        if key not in rules or not rules[key](value):
            problems.append(f"preset.gpu.{key}: expected image_size (null or >= 16), "
                            f"precision (fp32 or bf16) or backbones, got {value!r}")
    gpu_backbones = _backbones(backbones, task, problems, "preset.gpu.backbones") \
        if backbones else ()
    return PresetConfig(raw["name"], per_epoch, gpu_backbones, gpu)


def _section(cls: type, raw: Any, name: str, problems: list[str]) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        problems.append(f"{name}: must be a mapping, got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            problems.append(f"{name}.{key}: unknown key{_suggest(key, list(hints))}")
            continue
        kinds = [t for t in typing.get_args(hints[key]) or (hints[key],) if t is not type(None)]
        if value is None and len(kinds) < len(typing.get_args(hints[key]) or (1,)):
            values[key] = value
        elif not any(_is_kind(value, kind) for kind in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            problems.append(f"{name}.{key}: expected {expected}, got {value!r}")
        else:
            values[key] = float(value) if kinds == [float] else value
    return cls(**values)


def _is_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _resolve_data_paths(data: DataConfig, problems: list[str]) -> DataConfig:
    """Data locations as absolute paths (or URIs), resolved here on the driver."""
    def resolved(key: str) -> str | None:
        value = getattr(data, key)
        try:
            return None if value is None else paths.resolve(value, f"data.{key}")
        except AutomlError as exc:
            problems.append(str(exc))
            return str(value)

    return dataclasses.replace(data, path=resolved("path"), val_path=resolved("val_path"),
                               test_path=resolved("test_path"), cache_dir=resolved("cache_dir"))


def _check_values(sections: dict[str, Any], problems: list[str]) -> None:
    data, train, search, res = (sections[k] for k in ("data", "train", "search", "resources"))
    rules = [
        ("data.val_fraction", 0.0 < data.val_fraction < 1.0, "must be between 0 and 1"),
        ("data.test_fraction", data.test_fraction is None or 0.0 <= data.test_fraction <= 0.5,
         "must be between 0 and 0.5 (0: no test split)"),
        ("data.test_fraction", data.test_fraction is None or data.test_path is None,
         "cannot be set with data.test_path (the test set is that file or folder)"),
        ("data.group_column", data.group_column is None or data.max_per_class is None,
         "cannot be combined with data.max_per_class (groups are split whole)"),
        ("data.image_size", data.image_size is None or data.image_size >= 16, "must be >= 16"),
        ("data.seed", data.seed >= 0, "must be >= 0"),
        ("train.seed", train.seed >= 0, "must be >= 0"),
        ("search.seed", search.seed >= 0, "must be >= 0"),
        ("data.max_per_class", data.max_per_class is None or data.max_per_class >= 2,
         "must be >= 2"),
        ("train.epochs", train.epochs >= 1, "must be >= 1"),
        ("train.steps_per_epoch", train.steps_per_epoch is None or train.steps_per_epoch >= 1,
         "must be >= 1 (null: one full pass)"),
        ("train.max_restarts", train.max_restarts >= 0, "must be >= 0 (0: a lost worker "
         "fails the trial)"),
        ("train.precision", train.precision in ("fp32", "bf16"), "must be fp32 or bf16"),
        ("train.grad_clip", train.grad_clip is None or train.grad_clip > 0,
         "must be > 0 (null turns clipping off)"),
        ("search.num_samples", search.num_samples is None or search.num_samples >= 1,
         "must be >= 1 (or leave it out: 8, or unlimited with search.time_budget)"),
        ("search.metric", search.metric_name in METRICS, f"must be one of {list(METRICS)}"),
        ("train.class_weights", train.class_weights in CLASS_WEIGHTS,
         f"must be one of {list(CLASS_WEIGHTS)}"),
        ("search.final_seeds", search.final_seeds == 0 or search.final_seeds >= 2,
         "must be 0 (off) or at least 2 (seeds per configuration, the first included)"),
        ("search.final_top_k", search.final_top_k >= 1, "must be >= 1"),
        ("search.grace_period", 1 <= search.grace_period <= train.epochs,
         f"must be between 1 and train.epochs ({train.epochs})"),
        ("search.reduction_factor", search.reduction_factor >= 2, "must be >= 2"),
        ("search.rung_tolerance", search.rung_tolerance >= 0, "must be >= 0"),
        ("search.prune_backbones", search.prune_backbones is None or (
            search.prune_backbones >= 1 and search.rank_backbones),
         "must be >= 1 and needs search.rank_backbones: true (null keeps every backbone)"),
        ("search.sampler", search.sampler in SAMPLERS, f"must be one of {list(SAMPLERS)}"),
        ("search.scheduler", search.scheduler in SCHEDULERS,
         f"must be one of {list(SCHEDULERS)}"),
        ("resources.workers_per_trial", res.workers_per_trial >= 1, "must be >= 1"),
        ("resources.cpus_per_worker", res.cpus_per_worker > 0, "must be > 0"),
        ("resources.max_concurrent_trials",
         res.max_concurrent_trials is None or res.max_concurrent_trials >= 1, "must be >= 1"),
    ]
    try:
        search.budget_s  # noqa: B018 - parses and validates the duration
    except ValueError as exc:
        problems.append(f"search.time_budget: {exc}")
    for key, ok, rule in rules:
        if not ok:
            section, _, name = key.partition(".")
            value = getattr(sections[section], name)
            problems.append(f"{key}: {rule}, got {value!r}")


def _backbones(raw: Any, task: str, problems: list[str], key: str = "backbones"
               ) -> tuple[BackboneChoice, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{key}: must be a non-empty list of {{name, weights}} entries")
        return ()
    choices: list[BackboneChoice] = []
    for i, entry in enumerate(raw):
        where = f"{key}[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            problems.append(f"{where}: must be a model name or a {{name, weights}} mapping, "
                            f"got {entry!r}")
            continue
        extra = set(entry) - {"name", "weights"}
        if extra:
            problems.append(f"{where}: unknown key(s) {sorted(extra)}; use name and weights")
        weights = str(entry.get("weights", "hub"))
        if weights.startswith("file:"):
            try:
                weights = "file:" + paths.resolve(weights[5:], f"{where}.weights")
            except AutomlError as exc:
                problems.append(str(exc))
                continue
        choice = BackboneChoice(str(entry["name"]), weights)
        problem = (check_weights(choice.name, choice.weights)
                   or (TASKS[task].check_backbone(choice.name, choice.weights)
                       if task in TASKS else None))
        if problem:
            problems.append(f"{where}: {problem}")
        elif choice.label in {c.label for c in choices}:
            problems.append(f"{where}: {choice.label} is listed twice")
        else:
            choices.append(choice)
    return tuple(choices)


def _space(raw: Any, task: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        problems.append(f"space: must be a mapping of parameter specs, got {raw!r}")
        return {}
    parsed: dict[str, Any] = {}
    for name, spec in raw.items():
        if name not in spaces.PARAM_RULES:
            problems.append(f"space.{name}: unknown parameter{_suggest(name, spaces.PARAM_RULES)}")
            continue
        rule_task = spaces.PARAM_RULES[name].task
        if rule_task and rule_task != task:
            problems.append(f"space.{name}: only applies to task {rule_task}, this is {task}")
            continue
        try:
            parsed[name] = spaces.parse_param(name, spec)
        except ValueError as exc:
            problems.append(f"space.{name}: {exc}")
    defaults = {n: r.default_for(task) for n, r in spaces.PARAM_RULES.items()
                if r.task in (None, task)}
    return {**defaults, **parsed}


def _first_trials(raw: Any, backbones: tuple[BackboneChoice, ...], space: dict[str, Any],
                  problems: list[str]) -> tuple[dict[str, Any], ...]:
    """`first_trials`: a list of partial configurations, each value one the space allows."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, dict) and p for p in raw):
        problems.append("first_trials: must be a list of mappings, e.g. "
                        "[{backbone: NAME:WEIGHTS, unfreeze_fraction: 0.25}]")
        return ()
    labels = [b.label for b in backbones]
    for i, point in enumerate(raw):
        where = f"first_trials[{i}]"
        for name, value in point.items():
            if name == "backbone":
                if labels and value not in labels:
                    problems.append(f"{where}.backbone: {value!r} is not one of the "
                                    f"backbones' labels {labels}")
            elif name not in space:
                problems.append(f"{where}.{name}: not a parameter of this space"
                                f"{_suggest(name, space)}")
            elif not spaces.allows(space[name], value):
                problems.append(f"{where}.{name}: {value!r} is outside the space "
                                f"({spaces.describe_spec(space[name])})")
    return tuple(dict(p) for p in raw)


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(options)}"


__all__ = ["SAMPLERS", "SCHEDULERS", "BackboneChoice", "Config",
           "ConfigError", "DataConfig", "PresetConfig", "ResourcesConfig",
           "SearchConfig", "TrackingConfig", "TrainConfig", "from_dict", "load"]
