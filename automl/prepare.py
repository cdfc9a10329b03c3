"""Driver-side preparation before any trial starts: check every backbone's weights load,
resolve its preprocessing, and decode the dataset once."""

from __future__ import annotations

from typing import Any

from automl.config import Config
from automl.errors import AutomlError, BackboneError


def preflight_backbones(config: Config) -> dict[str, dict[str, Any]]:
    """Load each backbone's weights once (fail fast, before Ray starts), and return the
    preprocessing of every backbone label (from its pretrained config)."""
    out: dict[str, dict[str, Any]] = {}
    for choice in config.backbones:
        where = f"{config.source}: backbone {choice.label}"
        try:
            if config.task == "image":
                from automl.backbones.timm_backbone import create_timm_model, timm_data_config

                create_timm_model(choice.name, choice.weights, 2)
                out[choice.label] = timm_data_config(choice.name, config.data.image_size)
            else:
                from automl.backbones.hf_backbone import check_text_backbone

                out[choice.label] = check_text_backbone(choice.name, choice.weights)
        except BackboneError as exc:
            raise BackboneError(f"{where}: {exc}") from None
    return out


def prepare_data(
    config: Config, preprocessing: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], list[str], str]:
    """(payload shipped to every trial, class names, a one-line summary for the user)."""
    if not config.data.path:
        raise AutomlError(f"{config.source}: no data; pass --data PATH or set data.path")
    d = config.data
    assert d.path is not None
    if config.task == "image":
        from automl.data import prepare_images

        images = prepare_images(d.path, list(preprocessing.values()), d.val_fraction, d.seed,
                                d.max_per_class)
        payload = {"train": images.train, "val": images.val,
                   "train_labels": images.train_labels, "val_labels": images.val_labels}
        skipped = f", {len(images.skipped)} unreadable file(s) skipped" if images.skipped else ""
        summary = (f"Data: {d.path}: {len(images.classes)} classes, "
                   f"{len(images.train_labels)} train / {len(images.val_labels)} val{skipped}")
        return payload, images.classes, summary
    from automl.text_data import prepare_text

    return prepare_text(config)
