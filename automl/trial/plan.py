"""TrialPlan: everything one trial needs, as plain values (saved beside every checkpoint).

A plan is built from the sampled parameters plus the search's `SearchContext`
(`automl.trial.context.make_plan`), so trial workers never re-read YAML, and any checkpoint
can be rebuilt alone from its `plan.json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAN_FILE = "plan.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class TrialPlan:
    """The exact recipe of one trial."""

    task: str
    backbone: str
    weights: str
    classes: tuple[str, ...]
    preprocessing: dict[str, Any]
    unfreeze_fraction: float
    head_lr: float
    backbone_lr: float | None
    layer_decay: float
    weight_decay: float
    batch_size: int
    epochs: int
    seed: int
    precision: str = "fp32"
    grad_clip: float | None = 1.0
    hflip: bool = True
    lp_ft_epochs: int = 0
    max_length: int = 128
    pooling: str = "mean"
    # The fine-tuning recipe (`automl.trial.recipe`). These defaults are what every trial did
    # before the recipe existed, so a plan.json written then rebuilds the same training;
    # `make_plan` always writes each value out.
    lr_schedule: str = "constant"
    warmup: float = 0.0
    """Fraction of the planned steps the LR rises linearly from 0."""
    min_lr_ratio: float = 0.0
    """The decay's floor, as a fraction of each group's LR."""
    schedule_epochs: int | None = None
    """Epochs the LR schedule spans (None: `epochs`); a refit stops at the trial's best epoch
    on the trial's schedule."""
    label_smoothing: float = 0.0
    augment: str | None = None
    """Images: none | flip | trivialaugment | randaugment (None: `flip` when `hflip`)."""
    randaugment_magnitude: int = 9
    crop_scale: float = 1.0
    """Random-resized crop: the smallest crop area, as a fraction of the image."""
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    drop_path_rate: float = 0.0
    dropout: float | None = None
    """Text: the encoder's hidden and attention dropout (None: the model's own)."""
    ema_decay: float = 0.0
    """0: off; else the trial's model is the EMA of its weights (timm's ModelEmaV3)."""
    class_weights: tuple[float, ...] | None = None
    """Per-class weights of the training loss (None: unweighted)."""

    @property
    def pretrained(self) -> bool:
        """False for the from-scratch baseline."""
        return self.weights != "scratch"

    @property
    def augmentation(self) -> str:
        """The image augmentation policy that runs (`augment`, or what older plans did)."""
        if self.augment is not None:
            return self.augment
        return "flip" if self.hflip else "none"

    @property
    def planned_epochs(self) -> int:
        """The epochs the LR schedule spans."""
        return self.schedule_epochs or self.epochs

    @property
    def num_classes(self) -> int:
        """Size of the classification head."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["classes"] = list(self.classes)
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialPlan:
        """Inverse of `to_dict`; ignores keys it does not know (e.g. results)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in names}
        values["classes"] = tuple(values["classes"])
        if values.get("class_weights") is not None:
            values["class_weights"] = tuple(values["class_weights"])
        return cls(**values)

    def save(self, directory: Path, **extra: Any) -> None:
        """Write `plan.json` (plus extra values such as the epoch's metrics) into directory."""
        (directory / PLAN_FILE).write_text(json.dumps({**self.to_dict(), **extra}, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TrialPlan:
        """Read the plan saved in a checkpoint or export directory."""
        return cls.from_dict(json.loads((directory / PLAN_FILE).read_text()))

    @classmethod
    def read(cls, location: str) -> TrialPlan:
        """The plan of a checkpoint at `location` (a path or storage URI), without copying
        the checkpoint's weights."""
        from automl import storage

        return cls.from_dict(json.loads(storage.read_text(storage.join(location, PLAN_FILE))))
