"""Driver-side preparation, in the order that fails fastest: scan the data (cheap checks,
before Ray starts), check every backbone's weights load, then decode once Ray is up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automl.config import Config
from automl.errors import AutomlError, BackboneError

if TYPE_CHECKING:
    from automl.data import LabelledFiles

Prepared = tuple[dict[str, Any], list[str], str]
"""(payload shipped to every trial, class names, a one-line summary for the user)."""


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


def scan_data(config: Config) -> LabelledFiles | Prepared:
    """The cheap checks of the data (exists, classes, columns): images are listed, not decoded;
    text tables are read and split (tokenization happens per trial, on the workers)."""
    if not config.data.path:
        raise AutomlError(f"{config.source}: no data; pass --data PATH or set data.path")
    if config.task == "image":
        from automl.data import scan_image_folder

        return scan_image_folder(config.data.path)
    from automl.text_data import prepare_text

    return prepare_text(config)


def prepare_data(
    config: Config, scanned: LabelledFiles | Prepared, preprocessing: dict[str, dict[str, Any]]
) -> Prepared:
    """Decode the scanned images once per distinct input size (text is ready after the scan)."""
    if isinstance(scanned, tuple):
        return scanned
    from automl.data import prepare_images

    d = config.data
    images = prepare_images(scanned, list(preprocessing.values()), d.val_fraction, d.seed,
                            d.max_per_class)
    payload = {"train": images.train, "val": images.val,
               "train_labels": images.train_labels, "val_labels": images.val_labels}
    skipped = ""
    if images.skipped:
        skipped = (f", {len(images.skipped)} unreadable file(s) skipped "
                   f"(e.g. {images.skipped[0]})")
    summary = (f"Data: {d.path}: {len(images.classes)} classes, "
               f"{len(images.train_labels)} train / {len(images.val_labels)} val{skipped}")
    return payload, images.classes, summary
