"""Shared fixtures: a small synthetic image folder (three learnable classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image_folder(root: Path, per_class: int = 12, size: int = 32, seed: int = 0) -> Path:
    """Classes differ by where the bright region is: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for cls in ("left", "top", "center"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            h = size // 2
            if cls == "left":
                img[:, :h] += 150
            elif cls == "top":
                img[:h, :] += 150
            else:
                img[h // 2: h + h // 2, h // 2: h + h // 2] += 150
            Image.fromarray(img).save(root / cls / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")
