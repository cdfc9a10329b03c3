"""Image classification: timm backbones over an image folder or a manifest table.

Prepared rows hold each image encoded (`automl.tasks.image_codec`); workers decode them per
step — the eval transform, or timm's train transform for training — and normalize them with
the backbone's mean/std on the device.

timm is imported inside the methods that build models: validating a config and reading a
board consult the task without loading torch's model zoo.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from automl import storage
from automl.backbones.registry import check_timm_name
from automl.data import duplicates, sources
from automl.data.catalog import Catalog, class_codes, fingerprint
from automl.data.splits import split_sources
from automl.errors import DataError
from automl.tasks import image_codec
from automl.tasks.base import to_device
from automl.tasks.image_files import (
    UNREADABLE,
    list_images,
    load_image,
    read_image_file,
    read_manifest,
    scan_folder,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.backbones.groups import LayerGroups
    from automl.config.schema import BackboneChoice, Config, DataConfig
    from automl.trial.plan import TrialPlan

ROWS_PER_SOURCE_BATCH = 500
"""Rows per batch of `source_rows` (the preparation regroups them into parts)."""


class ImageClassification:
    """One label per image; timm backbones."""

    name = "image"
    library = "timm"
    plan_fields: tuple[str, ...] = ()
    shuffled_source = True
    export_inputs: tuple[tuple[str, tuple[int, ...]], ...] = (("pixel_values", (0,)),)
    library_format: str | None = None

    def check_backbone(self, name: str, weights: str) -> str | None:
        """Unknown timm names get the closest matches."""
        return check_timm_name(name)

    def scan(self, data: DataConfig) -> Catalog:
        """A folder of class sub-folders, or a manifest table with a path and a label column
        (and `data.group_column`); validation held out of it or read from `data.val_path`,
        the test split held out first (`data.test_fraction`) or read from `data.test_path`."""
        assert data.path is not None
        found = [_scan_source(data.path, data, data.group_column)]
        for setting, where in (("data.val_path", data.val_path),
                               ("data.test_path", data.test_path)):
            if where:
                if not storage.exists(where):
                    raise DataError(f"{setting} {where!r} does not exist; set it to a folder of "
                                    "class sub-folders or a manifest table")
                found.append(_scan_source(where, data))
        classes = sorted(set(found[0].names))
        labels = [class_codes(f.names, classes, f.source) for f in found]
        split, note = split_sources(labels, data, found[0].groups)
        locations = [loc for f in found for loc in f.locations]
        split, repeated = duplicates.resolve(
            split, duplicates.file_keys(locations, [s for f in found for s in f.sizes]),
            locations, data.drop_duplicates)
        stats, codes = [f.stats for f in found], np.concatenate(labels)
        key = fingerprint(self.name, data.path, data.val_path, data.test_path, locations,
                          stats, codes, split)
        return Catalog(data.path, tuple(classes), codes, split,
                       tuple(locations), key, sum(f.dropped for f in found),
                       (note,) if note else (), repeated)

    def source_rows(self, catalog: Catalog, data: DataConfig) -> Iterator[pd.DataFrame]:
        """File locations with their label and split, shuffled (folders are sorted by class),
        a few hundred rows at a time."""
        order = np.random.default_rng(data.seed).permutation(len(catalog.labels))
        for start in range(0, len(order), ROWS_PER_SOURCE_BATCH):
            rows = order[start:start + ROWS_PER_SOURCE_BATCH]
            yield pd.DataFrame({"key": [catalog.locations[i] for i in rows],
                                "label": catalog.labels[rows], "split": catalog.split[rows]})

    def preflight(self, choice: BackboneChoice, config: Config) -> dict[str, Any]:
        """Weights load; preprocessing from timm's pretrained config (size from the space)."""
        from automl.backbones.timm_backbone import create_timm_model, timm_data_config

        create_timm_model(choice.name, choice.weights, 2)
        return timm_data_config(choice.name, config.data.image_size)

    def variant(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        """Size, interpolation and crop decide how far an image is downscaled."""
        return {k: preprocessing[k] for k in ("image_size", "interpolation", "crop_pct")}

    def prepare_batch(self, batch: pa.Table, variant: dict[str, Any]) -> pa.Table:
        """Every readable image, encoded as small as its trials allow (`image_codec`)."""
        keys, labels, images = [], [], []
        for key, label in zip(batch.column("key").to_pylist(),
                              batch.column("label").to_pylist(), strict=True):
            try:
                encoded = image_codec.encode_for_storage(read_image_file(key), variant)
            except UNREADABLE:
                continue
            keys.append(key)
            labels.append(label)
            images.append(encoded)
        return pa.table({"key": pa.array(keys, pa.string()),
                         "label": pa.array(labels, pa.int32()),
                         "image": pa.array(images, pa.binary())})

    def build_model(self, plan: TrialPlan, saved: Path | None = None
                    ) -> tuple[nn.Module, LayerGroups]:
        """A timm model with its weights (or scratch when rebuilding from `saved`)."""
        from automl.backbones.groups import LayerGroups
        from automl.backbones.timm_backbone import create_timm_model, timm_layer_groups

        weights = "scratch" if saved is not None else plan.weights
        model = create_timm_model(plan.backbone, weights, plan.num_classes,
                                  plan.drop_path_rate)
        groups, head = timm_layer_groups(model)
        return model, LayerGroups(groups, head)

    def flips(self, plan: TrialPlan) -> bool:
        return plan.augmentation == "flip"

    def host_batch(self, batch: pa.Table, plan: TrialPlan, augment: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored images → uint8 NCHW (decoded, transformed) and labels, on the host."""
        import torch

        images = batch.column("image").to_pylist()
        labels = torch.from_numpy(batch.column("label").to_numpy().astype(np.int64))
        return image_codec.decode_batch(images, plan, augment), labels

    def to_inputs(self, host: torch.Tensor, plan: TrialPlan, device: torch.device,
                  augment: int | None = None) -> torch.Tensor:
        """uint8 NCHW → normalized floats on `device` (+ random erasing when training)."""
        inputs = normalize(to_device(host, device), plan.preprocessing)
        if augment is not None:
            inputs = image_codec.augment_on_device(inputs, plan, augment)
        return inputs

    def collate(self, batch: pa.Table, plan: TrialPlan, device: torch.device,
                augment: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared rows → normalized NCHW floats and labels on `device`; `augment` (a seed)
        applies the plan's training augmentation."""
        host, labels = self.host_batch(batch, plan, augment)
        return self.to_inputs(host, plan, device, augment), to_device(labels, device)

    def forward(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Images are one tensor."""
        return model(inputs)

    def predict_batches(self, inputs: list[str], export_dir: Path, plan: TrialPlan,
                        batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        """Decode files (or folders of files) the way training data was decoded."""
        import torch


        pre = plan.preprocessing
        files = list_images(inputs)
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            arrays = []
            for file in chunk:
                try:
                    arrays.append(load_image(file, pre["image_size"], pre["interpolation"],
                                             pre["crop_pct"]))
                except UNREADABLE as exc:
                    raise DataError(f"cannot read image {file!r}: {exc}") from None
            pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            yield chunk, normalize(pixels, pre)

    def example_input(self, plan: TrialPlan) -> torch.Tensor:
        """One mid-grey image of the trained size."""
        import torch

        size = int(plan.preprocessing["image_size"])
        return torch.zeros(1, 3, size, size)

    def save_extras(self, model: nn.Module, directory: Path, plan: TrialPlan) -> None:
        """timm rebuilds from its name: nothing else to save."""

    def save_library_format(self, model: nn.Module, directory: Path, plan: TrialPlan,
                            extras: Path) -> None:
        """timm models export as safetensors + config (always written): nothing more."""
        raise NotImplementedError("image models have no library format")

    def run_library_format(self, directory: Path, inputs: torch.Tensor) -> torch.Tensor:
        """See `save_library_format`."""
        raise NotImplementedError("image models have no library format")

    def read_inputs(self, inputs: list[str], settings: dict[str, Any]) -> list[str]:
        """Image files and folders are read by `predict_batches` itself."""
        return list(inputs)


def normalize(pixels: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """uint8 NCHW → float NCHW normalized with the backbone's mean and std."""
    import torch

    mean = torch.tensor(preprocessing["mean"], device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing["std"], device=pixels.device).view(1, -1, 1, 1)
    x = pixels.float().div_(255.0)
    return ((x - mean) / std).contiguous()


@dataclass(frozen=True)
class _Scanned:
    """One image source: a class-folder tree or a manifest table."""

    source: str
    locations: list[str]
    names: list[str]
    """Class name of each image."""
    dropped: int
    stats: Any
    """What the fingerprint hashes (sizes and mtimes)."""
    sizes: list[int]
    groups: list[str | None] | None = None


def _scan_source(location: str, data: DataConfig, group_column: str | None = None
                 ) -> _Scanned:
    """The images of a class-folder tree or a manifest table (with `group_column`: only a
    manifest, which has the column)."""
    if sources.is_table(location):
        found = read_manifest(location, data.path_column, data.label_column, group_column)
        return _Scanned(location, found.locations, found.names, found.dropped,
                        (sources.file_info(location).mtime_ns, found.stats),
                        [int(s) for s, _ in found.stats], found.groups)
    if group_column:
        raise DataError(f"data.group_column {group_column!r} needs a manifest table (a CSV/"
                        f"Parquet of image paths, labels and groups); {location!r} is a folder")
    locations, names, _classes, stats = scan_folder(location)
    return _Scanned(location, list(locations), list(names), 0, stats,
                    [int(s) for s, _ in stats])
