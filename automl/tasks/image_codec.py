"""Images as prepared data keeps them — encoded — and what a worker makes of them.

Preparation stores each image's **source bytes** when they are already small (a PNG or JPEG
no larger than the size trials need), else the full frame downscaled once so its short side
is the eval transform's resize (`size / crop_pct`) and re-encoded: PNG (lossless) for
lossless sources, JPEG quality 95 with full-resolution colour for JPEG sources — those are
already lossy, and at 95 the re-encoding error stays well below their own compression's
while the file is ≈ 3× smaller than a PNG of a photo. The full frame (not the center crop)
is kept, so training can take random-resized crops of it.

Workers decode per step: the eval transform (resize the short side, center-crop: the same
code `predict` and the export run) for validation, timm's train transform for training,
each example seeded by (trial seed, epoch, step, row) through every generator timm's
transforms draw from, so a restarted trial sees the same stream.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from automl.tasks.image_files import (
    MAX_ASPECT,
    cut_aspect,
    eval_frame,
    eval_frame_size,
    resize_crop,
    to_rgb,
)

if TYPE_CHECKING:
    import torch

    from automl.trial.plan import TrialPlan

LOSSLESS_FORMATS = {"PNG", "BMP", "TIFF", "GIF", "PPM", "TGA"}
KEPT_FORMATS = {"PNG", "JPEG", "WEBP"}
"""Source formats whose bytes are stored as they are when the image is small enough."""
JPEG_QUALITY = 95


def encode_for_storage(data: bytes, variant: dict[str, Any]) -> bytes:
    """The bytes prepared data keeps for one image file (raises one of `UNREADABLE` if it is
    not a readable image): the source when no larger than the eval frame, else the eval
    frame (`image_files.eval_frame`), so the eval transform of either is today's pixels."""
    size, crop_pct = int(variant["image_size"]), float(variant["crop_pct"])
    with Image.open(io.BytesIO(data)) as source:
        source.load()  # a truncated file fails here, at preparation, not in a trial
        width, height = source.size
        target = eval_frame_size(width, height, size, crop_pct)
        small = width * height <= target[0] * target[1]
        regular = max(width, height) <= MAX_ASPECT * min(width, height)
        if small and regular and source.format in KEPT_FORMATS and len(data) < width * height * 3:
            return data
        image = to_rgb(source)
        lossless = source.format in LOSSLESS_FORMATS
    # Upscaling is left to the worker (a larger file for no information).
    image = (cut_aspect(image) if small
             else eval_frame(image, size, variant["interpolation"], crop_pct))
    out = io.BytesIO()
    if lossless:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def eval_pixels(data: bytes, preprocessing: dict[str, Any]) -> np.ndarray:
    """Stored bytes → HWC uint8 of the backbone's eval transform (what predict computes)."""
    with Image.open(io.BytesIO(data)) as source:
        return resize_crop(to_rgb(source), int(preprocessing["image_size"]),
                           preprocessing["interpolation"], float(preprocessing["crop_pct"]))


def decode_batch(images: Sequence[bytes], plan: TrialPlan, seed: int | None) -> torch.Tensor:
    """Stored images → uint8 NCHW: the eval transform, or with `seed` the plan's training
    augmentation, example i seeded by seed + i (Python's, NumPy's and torch's global
    generators, which timm's and torchvision's transforms draw from, are restored after)."""
    import torch

    pre = plan.preprocessing
    policy = plan.augmentation if seed is not None else "none"
    if policy in ("none", "flip"):
        pixels = torch.from_numpy(np.stack([eval_pixels(b, pre) for b in images]))
        pixels = pixels.permute(0, 3, 1, 2)
        if policy == "flip":
            flip = torch.rand(len(pixels), generator=torch.Generator().manual_seed(seed or 0))
            pixels = torch.where((flip < 0.5)[:, None, None, None], pixels.flip(3), pixels)
        return pixels.contiguous()
    transform = train_transform(policy, int(pre["image_size"]), pre["interpolation"],
                                tuple(pre["mean"]), plan.crop_scale, plan.hflip,
                                plan.randaugment_magnitude)
    assert seed is not None
    # The transforms draw on the host; `torch.manual_seed` would also queue a seed for every
    # accelerator (capturing a stack trace each time: 1.5 ms an image).
    cpu = torch.default_generator
    states = random.getstate(), np.random.get_state(), cpu.get_state()
    try:
        out = []
        for i, data in enumerate(images):
            random.seed(seed + i)
            np.random.seed((seed + i) % 2**32)
            cpu.manual_seed(seed + i)
            with Image.open(io.BytesIO(data)) as source:
                out.append(transform(to_rgb(source)))
        return torch.stack(out)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        cpu.set_state(states[2])


@functools.lru_cache(maxsize=8)
def train_transform(policy: str, size: int, interpolation: str, mean: tuple[float, ...],
                    crop_scale: float, hflip: bool, magnitude: int) -> Any:
    """timm's training transform (random-resized crop, flip, the policy) ending in uint8
    CHW; normalization and random erasing follow on the device (`augment_on_device`)."""
    from timm.data import create_transform

    policies = {"trivialaugment": "rand-n1-m10-mstd101-inc1-p1.0",
                "randaugment": f"rand-m{magnitude}-n2-mstd0.5-inc1"}
    return create_transform(
        input_size=size, is_training=True, scale=(crop_scale, 1.0), hflip=0.5 if hflip else 0.0,
        auto_augment=policies[policy], interpolation=interpolation,
        mean=mean, normalize=False)


def augment_on_device(inputs: torch.Tensor, plan: TrialPlan, seed: int) -> torch.Tensor:
    """Random erasing (timm's, constant fill: draws only from Python's generator, seeded
    here) on a normalized batch."""
    if not plan.random_erasing:
        return inputs
    from timm.data.random_erasing import RandomErasing

    state = random.getstate()
    random.seed(seed)
    try:
        return RandomErasing(plan.random_erasing, mode="const", device=str(inputs.device))(
            inputs)
    finally:
        random.setstate(state)
