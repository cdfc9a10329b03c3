"""What every trial of a search shares: the part of its plan the searcher does not sample,
the data it reads, and how it is placed. Built once by the API from the typed config and the
prepared data, written to `RUN/static.json`, passed to every trial, read back by the board,
the report and export. A trial's own `TrialPlan` is `make_plan(sampled params, context)`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from automl.config.schema import Config, ResourcesConfig
from automl.trial.plan import TrialPlan


@dataclass(frozen=True)
class BackboneRef:
    """A backbone of the space, by its label: timm / Hugging Face name and weights."""

    name: str
    weights: str


@dataclass(frozen=True)
class TrialResources:
    """How one trial is placed (`resources:` of the space)."""

    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    single_worker_in_trial: bool = True

    @classmethod
    def from_config(cls, resources: ResourcesConfig) -> TrialResources:
        """The trial-placement part of the config's resources."""
        return cls(resources.workers_per_trial, resources.cpus_per_worker, resources.use_gpu,
                   resources.single_worker_in_trial)


@dataclass(frozen=True)
class DataFacts:
    """What the report and the model card say about the data."""

    source: str | None = None
    train_rows: int | None = None
    val_rows: int | None = None
    text_column: str | None = None
    duplicates: dict[str, Any] | None = None
    """What the exact-duplicate check found (`automl.data.duplicates.Duplicates`)."""


@dataclass(frozen=True)
class SearchContext:
    """The search's shared facts (`static.json` on disk, same keys)."""

    task: str
    classes: tuple[str, ...]
    backbones: Mapping[str, BackboneRef]
    """Backbone label (what the searcher samples) → name and weights."""
    preprocessing: Mapping[str, Mapping[str, Any]]
    """Backbone label → the task's preprocessing settings (image size, mean/std, tokenizer)."""
    variant_of: Mapping[str, str] = field(default_factory=dict)
    """Backbone label → the prepared-data variant it reads."""
    epochs: int = 1
    seed: int = 0
    precision: str = "fp32"
    grad_clip: float | None = None
    hflip: bool = True
    """Older `static.json` files lack it: their trials flipped."""
    steps_per_epoch: int | None = None
    max_restarts: int = 2
    feature_cache: bool = True
    metric: str = "accuracy"
    """What the search maximizes on validation (`search.metric`; older runs: accuracy)."""
    class_weights: tuple[float, ...] | None = None
    """Per-class loss weights (`train.class_weights: balanced`), from the training split."""
    resources: TrialResources = TrialResources()
    data_root: str | None = None
    """Where the prepared data of this dataset lives (`<cache>/<fingerprint>`)."""
    data: DataFacts = DataFacts()
    transferability: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Backbone label → the ranking's scores before the first trial (`knn_accuracy`, ...)."""
    trials_dir: str | None = None
    """Set for the search's trials (not saved): where their checkpoints go."""
    deadline: float | None = None
    """Set for the search's trials (not saved): the time budget's end, Unix time."""
    features_dir: str | None = None
    """Set per trial (not saved): its variant's cached frozen features."""

    RUNTIME = ("trials_dir", "deadline", "features_dir")

    @property
    def objective(self) -> str:
        """The reported result trials are ranked by (`val_accuracy`, `val_macro_f1`, ...)."""
        return f"val_{self.metric}"

    @classmethod
    def from_config(cls, config: Config, classes: list[str],
                    preprocessing: dict[str, dict[str, Any]],
                    variant_of: dict[str, str] | None = None) -> SearchContext:
        """The context before data facts and ranking are known (see `replace`)."""
        train = config.train
        return cls(
            task=config.task, classes=tuple(classes),
            backbones={b.label: BackboneRef(b.name, b.weights) for b in config.backbones},
            preprocessing=preprocessing, variant_of=variant_of or {},
            epochs=train.epochs, seed=train.seed, precision=train.precision,
            grad_clip=train.grad_clip, hflip=train.hflip,
            steps_per_epoch=train.steps_per_epoch, max_restarts=train.max_restarts,
            feature_cache=train.feature_cache, metric=config.search.metric_name,
            resources=TrialResources.from_config(config.resources),
        )

    def replace(self, **changes: Any) -> SearchContext:
        """A copy with `changes` (the context itself never changes)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, with the keys `static.json` has always had."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in self.RUNTIME}
        out["classes"] = list(self.classes)
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        out["backbones"] = {k: dataclasses.asdict(v) for k, v in self.backbones.items()}
        out["preprocessing"] = {k: dict(v) for k, v in self.preprocessing.items()}
        out["variant_of"] = dict(self.variant_of)
        out["resources"] = dataclasses.asdict(self.resources)
        out["data"] = dataclasses.asdict(self.data)
        out["transferability"] = {k: dict(v) for k, v in self.transferability.items()}
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SearchContext:
        """Inverse of `to_json`; a `static.json` from an older run lacks some keys (their
        defaults then are what that run used) and may hold ones no longer read."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in names}
        values["classes"] = tuple(raw.get("classes") or ())
        if values.get("class_weights") is not None:
            values["class_weights"] = tuple(values["class_weights"])
        values["backbones"] = {k: BackboneRef(v["name"], v["weights"])
                               for k, v in (raw.get("backbones") or {}).items()}
        values["resources"] = _known(TrialResources, raw.get("resources"))
        values["data"] = _known(DataFacts, raw.get("data"))
        values["transferability"] = raw.get("transferability") or {}
        values.setdefault("task", "image")
        values.setdefault("preprocessing", {})
        return cls(**values)


def _known(kind: Any, raw: Mapping[str, Any] | None) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in (raw or {}).items() if k in names})


@dataclass(frozen=True)
class LoopSettings:
    """What the training loop receives beside its plan (Ray Train's `train_loop_config`,
    which must stay a plain dict: `to_dict` / `from_dict`)."""

    plan: TrialPlan
    trial_start: float
    """Unix time the trial's process started (startup time on the board)."""
    threads: int = 1
    steps_per_epoch: int | None = None
    deadline: float | None = None
    features_dir: str | None = None
    train_rows: int | None = None
    decode_workers: int = 0
    """Processes decoding/augmenting batches beside the step (0: inline)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values, the plan as `TrialPlan.to_dict`."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "plan": self.plan.to_dict()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LoopSettings:
        """Inverse of `to_dict`."""
        return cls(**{**raw, "plan": TrialPlan.from_dict(raw["plan"])})


def make_plan(params: dict[str, Any], context: SearchContext) -> TrialPlan:
    """Combine one trial's sampled parameters with the search's shared context into its plan.

    Every recipe value is written out; a knob the sampler left out (it does not act for this
    trial: `spaces.sample_trial`) gets its neutral value, so the plan says what ran."""
    label = params["backbone"]
    unfrozen = float(params["unfreeze_fraction"]) > 0
    # Trials of a run from before the recipe sampled no recipe knob: their augmentation
    # follows hflip (plan.augmentation); a newer trial the sampler gave none did not augment.
    legacy = "lr_schedule" not in params
    augment = (None if legacy or context.task != "image"
               else str(params.get("augment", "none")))
    return TrialPlan(
        task=context.task,
        backbone=context.backbones[label].name,
        weights=context.backbones[label].weights,
        classes=tuple(context.classes),
        preprocessing=dict(context.preprocessing[label]),
        unfreeze_fraction=float(params["unfreeze_fraction"]),
        head_lr=float(params["head_lr"]),
        backbone_lr=float(params["backbone_lr"]) if unfrozen else None,
        layer_decay=float(params.get("layer_decay", 1.0)) if unfrozen else 1.0,
        weight_decay=float(params["weight_decay"]),
        batch_size=int(params["batch_size"]),
        epochs=int(context.epochs),
        seed=int(params.get("seed", context.seed)),  # a final-seeds trial carries its own
        precision=context.precision,
        grad_clip=context.grad_clip,
        hflip=bool(context.hflip),
        lp_ft_epochs=int(params.get("lp_ft_epochs", 0)) if unfrozen else 0,
        max_length=int(params.get("max_length", 128)),
        pooling=str(params.get("pooling", "mean")),
        lr_schedule=str(params.get("lr_schedule", "constant")),
        warmup=float(params.get("warmup", 0.0)),
        min_lr_ratio=float(params.get("min_lr_ratio", 0.0)),
        label_smoothing=float(params.get("label_smoothing", 0.0)),
        augment=augment,
        randaugment_magnitude=int(params.get("randaugment_magnitude", 9)),
        crop_scale=float(params.get("crop_scale", 1.0)),
        random_erasing=float(params.get("random_erasing", 0.0)),
        mixup=float(params.get("mixup", 0.0)),
        cutmix=float(params.get("cutmix", 0.0)),
        drop_path_rate=float(params.get("drop_path_rate", 0.0)),
        dropout=float(params["dropout"]) if "dropout" in params else None,
        ema_decay=float(params.get("ema_decay", 0.0)),
        class_weights=context.class_weights,
    )
