"""An ensemble as one model (issue 29): the weighted mean of its members' probabilities.

`WeightedEnsemble.forward` returns log(Σ wᵢ softmax(memberᵢ(x))): a logit vector whose
softmax is exactly the ensemble's probabilities, so every consumer of an exported model —
`automl predict`, `automl.load`, the README's onnxruntime snippet, the parity checks —
works on an ensemble unchanged.

The graph takes one input, prepared like the heaviest member's (`shared_preprocessing`).
Text members must share one tokenizer and `max_length`. Image members may differ in size,
`crop_pct`, interpolation and normalization: each member's `ImageView` cuts its own central
view out of the input (all of it when the member was trained on a wider view), resizes it
(antialiased, in the graph) and renormalizes it. A member that shares the input's
preprocessing sees exactly what it was trained on. (Feeding the widest view instead, so
that no member sees less, cost the image demo's 7-member ensemble 1.1 points of test
accuracy: every member then sees a resampled input.)

An ensemble folder (staged for export, and the export itself) holds `ensemble.json`, the
shared preprocessing in `plan.json` and one folder per member under `members/` (its plan,
weights and task extras): every member stays a model of its own.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from automl import storage
from automl.errors import AutomlError
from automl.export.saved import load_weights, rebuild
from automl.trial.checkpoints import TRAIN_STATE_FILE
from automl.trial.plan import PLAN_FILE, WEIGHTS_FILE, TrialPlan

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"
ENSEMBLE_FORMAT = "automl-ensemble/1"


class WeightedEnsemble(nn.Module):
    """Members' probabilities averaged with fixed `weights` (one per member, sum 1). Every
    member is called with the ensemble's own arguments."""

    weights: torch.Tensor

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if not members or len(members) != len(weights):
            raise ValueError("an ensemble needs one weight per member, and a member")
        if any(w <= 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"ensemble weights must be positive and sum to 1: {list(weights)}")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        """log of the weighted mean probability (a logit vector for softmax)."""
        log_probs = torch.stack([torch.log_softmax(m(*inputs, **named).float(), dim=-1)
                                 for m in self.members])
        log_weights = torch.log(self.weights).view(-1, *([1] * (log_probs.dim() - 1)))
        return torch.logsumexp(log_probs + log_weights, dim=0)


class ImageView(nn.Module):
    """A member fed its own view of the ensemble's shared image input: the central box that
    covers the member's field of view, resized to the member's size and renormalized with
    its mean and std (each step only where the member differs from the input)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: nn.Module, shared: dict[str, Any], own: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.input_size, self.size = int(shared["image_size"]), int(own["image_size"])
        ratio = _view(own) / _view(shared)
        self.box = min(self.input_size, max(1, round(self.input_size * ratio)))
        self.offset = (self.input_size - self.box) // 2
        self.mode = own["interpolation"] if own["interpolation"] in ("bilinear", "bicubic",
                                                                     "nearest") else "bilinear"
        mean, std = (torch.tensor(own[k], dtype=torch.float32) for k in ("mean", "std"))
        shared_mean, shared_std = (torch.tensor(shared[k], dtype=torch.float32)
                                   for k in ("mean", "std"))
        # x_own = (x_shared · std_shared + mean_shared − mean_own) / std_own
        self.renormalize = not (torch.equal(mean, shared_mean) and torch.equal(std, shared_std))
        self.register_buffer("scale", (shared_std / std).view(1, -1, 1, 1))
        self.register_buffer("shift", ((shared_mean - mean) / std).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The member's logits on its view of `pixels` (N × 3 × input_size²)."""
        x = pixels
        if self.box != self.input_size:
            end = self.offset + self.box
            x = x[:, :, self.offset:end, self.offset:end]
        if self.box != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode=self.mode,
                              align_corners=None if self.mode == "nearest" else False,
                              antialias=self.mode != "nearest")
        if self.renormalize:
            x = x * self.scale + self.shift
        out: torch.Tensor = self.model(x)
        return out


def _view(preprocessing: dict[str, Any]) -> float:
    """Fraction of the resized short side the eval transform keeps (its centre crop)."""
    size = int(preprocessing["image_size"])
    return size / int(size / float(preprocessing["crop_pct"]))


def shared_preprocessing(plans: Sequence[TrialPlan], weights: Sequence[float]
                         ) -> dict[str, Any]:
    """The one input every member is fed from: the heaviest member's preprocessing (it sees
    exactly what it was trained on; the run has validation rows prepared for it). Text
    members must all share it."""
    first = plans[0]
    for plan in plans[1:]:
        if (plan.task, plan.classes) != (first.task, first.classes):
            raise AutomlError("an ensemble's members must share one task and one set of "
                              f"classes ({first.backbone} and {plan.backbone} do not)")
    heaviest = plans[max(range(len(plans)), key=lambda i: weights[i])].preprocessing
    if "crop_pct" not in heaviest:
        for plan in plans[1:]:
            if (plan.preprocessing, plan.max_length) != (first.preprocessing, first.max_length):
                raise AutomlError(
                    "a text ensemble exports only when its members share one tokenizer and "
                    f"max_length ({first.backbone}/{first.max_length} vs {plan.backbone}/"
                    f"{plan.max_length}); export a member with --trial ID")
    return dict(heaviest)


def is_ensemble(directory: Path) -> bool:
    """Whether a checkpoint or export folder holds an ensemble."""
    return (directory / ENSEMBLE_FILE).is_file()


def stage_ensemble(members: Sequence[tuple[str, float, str]], out: Path, **metrics: Any
                   ) -> None:
    """Write an ensemble folder at `out` (new) from `(name, weight, checkpoint location)`
    members: each member's plan, weights and extras (never its training state), the shared
    preprocessing (with `metrics`, in `plan.json`) and `ensemble.json`."""
    out.mkdir()
    plans: list[TrialPlan] = []
    entries: list[dict[str, Any]] = []
    for index, (name, weight, location) in enumerate(members):
        folder = f"{MEMBERS_DIR}/{index}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        with storage.local_copy(location) as checkpoint:
            _copy_member(checkpoint, out / folder, weights=True)
        plans.append(TrialPlan.load(out / folder))
        entries.append({"name": name, "weight": weight, "dir": folder})
    weights = [float(e["weight"]) for e in entries]
    shared = shared_preprocessing(plans, weights)
    heaviest = max(range(len(entries)), key=lambda i: weights[i])
    dataclasses.replace(plans[heaviest], preprocessing=shared).save(out, **metrics)
    for extra in (out / entries[heaviest]["dir"]).iterdir():  # the tokenizer, for text
        if extra.is_dir():
            shutil.copytree(extra, out / extra.name)
    spec = {"format": ENSEMBLE_FORMAT, "members": entries, "preprocessing": shared}
    (out / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=2))


def read_spec(directory: Path) -> dict[str, Any]:
    """`ensemble.json`, checked: its format, and member folders inside `members/`."""
    spec = json.loads((directory / ENSEMBLE_FILE).read_text())
    if spec.get("format") != ENSEMBLE_FORMAT:
        raise AutomlError(f"{directory / ENSEMBLE_FILE}: format {spec.get('format')!r}, "
                          f"expected {ENSEMBLE_FORMAT}")
    for entry in spec["members"]:
        parts = Path(entry["dir"]).parts
        if len(parts) != 2 or parts[0] != MEMBERS_DIR or parts[1] in ("..", "."):
            raise AutomlError(f"{directory / ENSEMBLE_FILE}: member folder {entry['dir']!r} "
                              f"is not inside {MEMBERS_DIR}/")
    return spec


def load_ensemble(directory: Path, allow_missing_bn_counters: bool = False
                  ) -> WeightedEnsemble:
    """The ensemble saved in `directory`, every member rebuilt and loaded; eval mode."""
    spec = read_spec(directory)
    members: list[nn.Module] = []
    for entry in spec["members"]:
        folder = directory / entry["dir"]
        plan = TrialPlan.load(folder)
        model = rebuild(plan, folder)
        load_weights(model, folder / WEIGHTS_FILE, allow_missing_bn_counters)
        image = "crop_pct" in plan.preprocessing
        members.append(ImageView(model, spec["preprocessing"], plan.preprocessing)
                       if image else model)
    return WeightedEnsemble(members, [float(e["weight"]) for e in spec["members"]]).eval()


def save_ensemble(model: WeightedEnsemble, src: Path, out: Path) -> None:
    """Write `model`'s members (plan and extras from `src`, weights from `model`) and
    `ensemble.json` into the export folder `out`."""
    spec = read_spec(src)
    for entry, member in zip(spec["members"], model.members, strict=True):
        inner = member.model if isinstance(member, ImageView) else member
        _copy_member(src / entry["dir"], out / entry["dir"], weights=False)
        save_file({k: v.contiguous() for k, v in inner.state_dict().items()},
                  str(out / entry["dir"] / WEIGHTS_FILE))
    (out / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=2))


def _copy_member(checkpoint: Path, folder: Path, weights: bool) -> None:
    """A member's plan and task extras (and its weights when `weights`), never the training
    state: it is a pickle, and no use to a deployed model."""
    folder.mkdir(parents=True)
    for item in checkpoint.iterdir():
        if item.name == TRAIN_STATE_FILE or (item.name == WEIGHTS_FILE and not weights):
            continue
        if item.is_dir():
            shutil.copytree(item, folder / item.name)
        elif item.name in (PLAN_FILE, WEIGHTS_FILE) or item.suffix in (".json", ".txt"):
            shutil.copy2(item, folder / item.name)
