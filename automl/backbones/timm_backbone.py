"""timm vision backbones: weights from hub / package / file, layer groups, preprocessing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from automl import storage
from automl.backbones.registry import hub_reachable, offline_hint, packaged_weights
from automl.errors import BackboneError


def create_timm_model(name: str, weights: str, num_classes: int, drop_path_rate: float = 0.0
                      ) -> nn.Module:
    """Create `name` with a fresh `num_classes` head and its backbone weights loaded strictly
    (`drop_path_rate`: stochastic depth while training, for the models timm gives it)."""
    extra: dict[str, Any] = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if weights == "scratch":
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **extra)
    if weights == "hub":
        if not hub_reachable():
            raise BackboneError(offline_hint(name))
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes, **extra)
        except Exception as exc:  # network / hub errors come in many types
            raise BackboneError(f"downloading weights for {name!r} failed: {exc}") from None
    if weights == "package":
        spec = packaged_weights(name)
        state = _read_state_dict(spec.path())
        if spec.key_format == "lukemelas":
            model = timm.create_model(name, pretrained=False, **extra)
            state = lukemelas_to_timm(state, model)
        else:
            model = timm.create_model(name, pretrained=False, **extra)
    else:
        model = timm.create_model(name, pretrained=False, **extra)
        state = _read_state_dict(storage.cached_copy(weights.removeprefix("file:")))
    _load_strict(model, state, name)
    model.reset_classifier(num_classes)  # type: ignore[operator]
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"cannot read weights file {path}: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return dict(state)


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """A missing or unexpected key is an error, not a warning: silent partial loads hide bugs."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise BackboneError(
            f"weights do not match {name!r} (strict load): {' '.join(first)}"
        ) from None


def lukemelas_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-Lite keys of the `efficientnet_pytorch` layout to timm's layout.

    `_blocks.N` is the N-th block when timm's stages are flattened in order; the first
    (depthwise-separable) block has no expansion conv, so its layers map differently.
    """
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]  # type: ignore[arg-type]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
           "_bn1": "bn2", "_fc": "classifier"}
    ds_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                "_bn2": "bn2"}
    ir_block = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            n, layer, param = int(match[1]), match[2], match[3]
            if n >= len(flat):
                raise BackboneError(f"weights have block {n}, the model only {len(flat)}")
            stage, index = flat[n]
            first_block = "_expand_conv" not in _block_layers(state, n)
            table = ds_block if first_block else ir_block
            out[f"blocks.{stage}.{index}.{table.get(layer, layer)}.{param}"] = value
        else:
            layer, _, param = key.partition(".")
            out[f"{top.get(layer, layer)}.{param}"] = value
    return out


def _block_layers(state: dict[str, torch.Tensor], n: int) -> set[str]:
    prefix = f"_blocks.{n}."
    return {k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}


def timm_layer_groups(model: nn.Module) -> tuple[list[list[str]], list[str]]:
    """Backbone parameter names grouped bottom → top by timm's `group_matcher`, and the head's.

    Coarse groups: stem, then one group per stage / block, the final norm with the last.
    """
    from timm.models import group_parameters

    head = _classifier_param_names(model)
    grouped = group_parameters(model, model.group_matcher(coarse=True))  # type: ignore[operator]
    groups = [[n for n in names if n not in head] for names in grouped.values()]
    return [g for g in groups if g], sorted(head)


def _classifier_param_names(model: nn.Module) -> set[str]:
    classifier = model.get_classifier()  # type: ignore[operator]
    ids = {id(p) for p in classifier.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def timm_data_config(name: str, image_size: int | None) -> dict[str, Any]:
    """Preprocessing from the backbone's pretrained config (timm), with an optional size."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        raise BackboneError(f"timm has no pretrained config for {name!r}")
    size = image_size or int(cfg.input_size[-1])
    return {
        "image_size": size,
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "interpolation": cfg.interpolation or "bilinear",
        "crop_pct": float(cfg.crop_pct or 1.0),
    }
