"""Exported demo models scored side by side on data no search saw, with the standard error
of their paired difference (same examples).

Image: the first N of Fashion-MNIST's official test images (t10k; the demo trains on a
subset of the training images). Text: Rotten Tomatoes fresh/rotten snippets the demo's
subset left out (`data/rotten_tomatoes.csv` holds 1200 per class of the 13.9k).

    python bench/heldout.py image EXPORT_BEFORE EXPORT_AFTER [--n 2000]
    python bench/heldout.py text EXPORT_BEFORE EXPORT_AFTER [--n 1000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from automl.data import demo
from automl.data.demo import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, _read_idx
from automl.export.load import load


def test_images(out: Path, count: int) -> tuple[list[str], list[str]]:
    """The first `count` t10k images as PNG files, and their class names."""
    images = _read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:count]
    labels = _read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:count]
    files = []
    for i, image in enumerate(images):
        files.append(str(out / f"{i:05d}.png"))
        Image.fromarray(image).save(files[-1])
    return files, [FASHION_MNIST_CLASSES[c] for c in labels]


def held_back_reviews(per_class: int, demo_csv: Path = Path("data/rotten_tomatoes.csv")
                      ) -> tuple[list[str], list[str]]:
    """`per_class` fresh and rotten snippets not in the demo's table (seeded): the rows
    `automl.data.demo.held_back_reviews` picks."""
    rows = demo.held_back_reviews(demo_csv, per_class)
    return rows["text"].tolist(), rows["category"].tolist()


def correct(export: str, inputs: list[str], truth: list[str]) -> np.ndarray:
    """1 where the exported model's top class is the true one."""
    predictions = load(export).predict(inputs, batch_size=64)
    return np.array([p.label == t for p, t in zip(predictions, truth, strict=True)], float)


def main() -> None:
    """Score both exports and print accuracies, the paired difference and its SE."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("image", "text"))
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--n", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.task == "image":
            inputs, truth = test_images(Path(tmp), args.n or 2000)
        else:
            inputs, truth = held_back_reviews((args.n or 1000) // 2)
        before, after = (correct(e, inputs, truth) for e in (args.before, args.after))
    diff = after - before
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    print(f"{args.task}, {len(diff)} held-out examples: before {before.mean():.4f} "
          f"(SE {before.std(ddof=1) / math.sqrt(len(diff)):.4f}), after {after.mean():.4f}; "
          f"difference {diff.mean():+.4f} ± {se:.4f} (SE of the paired difference), "
          f"{diff.mean() / se if se else float('inf'):.1f} SE")


if __name__ == "__main__":
    main()
