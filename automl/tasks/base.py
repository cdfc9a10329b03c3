"""The Task protocol: everything that differs between image and text classification.

The rest of the product (preparation, the trial loop, export, prediction, the board) talks to
a task only through this interface, so a new task is one module plus a registry line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import torch
    from torch import nn

    from automl.backbones.groups import LayerGroups
    from automl.config.schema import BackboneChoice, Config, DataConfig
    from automl.data.catalog import Catalog
    from automl.trial.plan import TrialPlan

Inputs = Any
"""What a task's model takes: a tensor (images) or a dict of tensors (text)."""


class Task(Protocol):
    """One kind of supervised problem, from raw source rows to model inputs and exports."""

    name: str
    """The `task:` value of a search space."""
    library: str
    """Where its backbones come from (`timm`, `transformers`): written into exports."""
    plan_fields: tuple[str, ...]
    """Task-only plan knobs the leaderboard shows (others are blank for this task)."""
    shuffled_source: bool
    """`source_rows` yields rows in a seeded random order (the catalog holds every row), so
    preparation needs no shuffle job; False: rows come in source order (streamed tables)."""

    export_inputs: tuple[tuple[str, tuple[int, ...]], ...]
    """The model's inputs in call order, each with its dynamic dimensions (batch first):
    the names and axes of TorchScript/ONNX exports."""
    library_format: str | None
    """The backbone library's own model format an export can add (`hf`), or None."""

    def check_backbone(self, name: str, weights: str) -> str | None:
        """A one-line problem with a backbone name, or None (cheap: builds nothing)."""

    def scan(self, data: DataConfig) -> Catalog:
        """List and check the source on the driver (labels, split); never decodes it."""

    def source_rows(self, catalog: Catalog, data: DataConfig) -> Iterator[pd.DataFrame]:
        """The catalog's rows in bounded batches: `key`, `label`, `split` and what
        `prepare_batch` reads (images: the key is the file's location; text: `text`); in a
        random order seeded by `data.seed` when `shuffled_source`."""

    def preflight(self, choice: BackboneChoice, config: Config) -> dict[str, Any]:
        """Load a backbone's weights once (BackboneError if they do not load) and return its
        preprocessing: everything a worker needs to turn prepared rows into inputs."""

    def variant(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        """The part of the preprocessing that preparation bakes into the shards; backbones
        with equal variants share one prepared copy."""

    def prepare_batch(self, batch: pa.Table, variant: dict[str, Any]) -> pa.Table:
        """Source rows → prepared rows (`key`, `label`, model columns). Runs in Ray tasks
        on the cluster; unreadable rows are left out (the preparation counts them)."""

    def build_model(self, plan: TrialPlan, saved: Path | None = None
                    ) -> tuple[nn.Module, LayerGroups]:
        """The backbone with its weights and a new head (`saved`: rebuild from an export
        or checkpoint directory instead of the original weights)."""

    def collate(self, batch: pa.Table, plan: TrialPlan, device: torch.device,
                augment: int | None = None) -> tuple[Inputs, torch.Tensor]:
        """Prepared rows → (model inputs, labels) on `device`: `host_batch` then `to_inputs`.
        Training batches pass `augment`, the batch's seed (`steps.stream_seed`)."""

    def host_batch(self, batch: pa.Table, plan: TrialPlan, augment: int | None = None
                   ) -> tuple[Any, torch.Tensor]:
        """The host half of `collate` (decode, augment, tokenize): plain CPU tensors, so it
        can run in a decode worker process while the device trains."""

    def to_inputs(self, host: Any, plan: TrialPlan, device: torch.device,
                  augment: int | None = None) -> Inputs:
        """The device half of `collate`: `host_batch`'s inputs as the model takes them."""

    def flips(self, plan: TrialPlan) -> bool:
        """Whether `collate` mirrors training examples at random for this plan (a feature
        cache then keeps a mirrored view too)."""

    def forward(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        """Logits for a batch of inputs."""

    def predict_batches(self, inputs: list[str], export_dir: Path, plan: TrialPlan,
                        batch_size: int) -> Iterator[tuple[list[str], Inputs]]:
        """(names, model inputs) for user inputs: image files/folders or texts."""

    def example_input(self, plan: TrialPlan) -> Inputs:
        """A small valid input batch (tracing / export checks)."""

    def save_extras(self, model: nn.Module, directory: Path, plan: TrialPlan) -> None:
        """Files a checkpoint needs besides the weights to rebuild offline (tokenizer...)."""

    def save_library_format(self, model: nn.Module, directory: Path, plan: TrialPlan,
                            extras: Path) -> None:
        """Write `library_format` into `directory` (`extras`: the export's saved extras)."""

    def run_library_format(self, directory: Path, inputs: Inputs) -> torch.Tensor:
        """Logits of the model in `directory`, loaded the way users load that format."""

    def read_inputs(self, inputs: list[str], settings: dict[str, Any]) -> list[str]:
        """Command-line inputs → the items `predict_batches` takes (text: a table's texts;
        `settings`: the export's data settings, e.g. the text column)."""


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host → device copy; for CUDA from pinned memory and asynchronous, so the copy of the
    next batch overlaps the current step's compute."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
