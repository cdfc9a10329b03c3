"""Per-task tensors and forward passes: how a batch of examples becomes model input.

Image examples travel as uint8 NHWC arrays (decoded once on the driver) and are normalized
here with the backbone's mean/std; training batches get a seeded horizontal flip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from automl.plan import TrialPlan


@dataclass
class TaskData:
    """Training and validation tensors of one task, and how to feed them to the model."""

    train_inputs: dict[str, torch.Tensor]
    train_labels: torch.Tensor
    val_inputs: dict[str, torch.Tensor]
    val_labels: torch.Tensor
    preprocessing: dict[str, Any]
    augment: bool = True
    """Random horizontal flips of training images."""

    @property
    def num_train(self) -> int:
        """Training examples on this worker (all of them; workers shard by index)."""
        return len(self.train_labels)

    @property
    def num_val(self) -> int:
        """Validation examples."""
        return len(self.val_labels)

    def train_batch(
        self, index: torch.Tensor, device: torch.device, generator: torch.Generator
    ) -> tuple[Any, torch.Tensor]:
        """Model inputs and labels of a training batch (augmented for images)."""
        inputs = self._inputs(self.train_inputs, index, device)
        if "pixels" in inputs and self.augment:
            flip = torch.rand(len(index), generator=generator) < 0.5
            pixels = inputs["pixels"]
            inputs["pixels"] = torch.where(
                flip.to(device)[:, None, None, None], pixels.flip(-1), pixels
            )
        return inputs, self.train_labels[index].to(device)

    def val_batch(self, index: torch.Tensor, device: torch.device) -> tuple[Any, torch.Tensor]:
        """Model inputs and labels of a validation batch."""
        return self._inputs(self.val_inputs, index, device), self.val_labels[index].to(device)

    def _inputs(
        self, source: dict[str, torch.Tensor], index: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        out = {k: v[index].to(device) for k, v in source.items()}
        if "attention_mask" in out:  # trim padding beyond the longest text of the batch
            longest = max(int(out["attention_mask"].sum(1).max()), 1)
            out = {k: v[:, :longest] for k, v in out.items()}
        if "pixels" in out:
            out["pixels"] = normalize(out["pixels"], self.preprocessing)
        return out

    @staticmethod
    def forward(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a batch: images as one tensor, text as keyword tensors."""
        if "pixels" in inputs:
            return model(inputs["pixels"])
        return model(**inputs)


def normalize(pixels: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """uint8 NHWC → float NCHW normalized with the backbone's mean and std."""
    mean = torch.tensor(preprocessing["mean"], device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing["std"], device=pixels.device).view(1, -1, 1, 1)
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    return ((x - mean) / std).contiguous()


def make_task_data(plan: TrialPlan, payload: dict[str, Any]) -> TaskData:
    """Tensors for one plan from the prepared payload (shared by all trials)."""
    if plan.task == "image":
        from automl.data import resize_key

        key = resize_key(plan.preprocessing)
        return TaskData(
            {"pixels": torch.from_numpy(np.array(payload["train"][key]))},
            torch.as_tensor(payload["train_labels"], dtype=torch.long),
            {"pixels": torch.from_numpy(np.array(payload["val"][key]))},
            torch.as_tensor(payload["val_labels"], dtype=torch.long),
            plan.preprocessing,
            augment=plan.hflip,
        )
    from automl.text_data import make_text_task_data

    return make_text_task_data(plan, payload)
