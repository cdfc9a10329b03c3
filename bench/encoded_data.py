"""Encoded prepared images against the raw pixels prepared data held before (format 1):
bytes on disk, preparation time and CPU training throughput, side by side in one run.
Run through `python bench/streaming.py --only 3` / `--only 4`.

"Before" is rebuilt here exactly as format 1 stored it: each image decoded, resized and
center-cropped once (`load_image`, the same eval transform), its uint8 pixels a fixed-size
binary column in the same Parquet writer; its trial read them with one memcpy and flipped on
the host. "Now" is `ImageClassification.prepare_batch` / `host_batch` as a search runs them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from automl.data.batches import local_batches
from automl.tasks import get_task
from automl.tasks.image import ImageClassification
from automl.tasks.image_files import UNREADABLE, load_image
from automl.trial.decode import Decoder
from automl.trial.plan import TrialPlan
from automl.trial.steps import setup_trial, train_epoch

ROWS_PER_SHARD = 250


def photos(out: Path, count: int, seed: int = 0) -> Path:
    """`count` photographs: random crops (300-427 px a side) of scikit-learn's two sample
    photos (640 × 427), saved as JPEG quality 90 in two class folders."""
    import sklearn.datasets

    marker = out / f".complete-{count}"
    if marker.exists():
        return out
    folder = Path(os.path.dirname(sklearn.datasets.__file__)) / "images"
    sources = [Image.open(folder / f"{name}.jpg").convert("RGB") for name in ("flower", "china")]
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = sources[i % 2]
        w, h = (int(rng.integers(300, 428)) for _ in range(2))
        x, y = int(rng.integers(0, 640 - w + 1)), int(rng.integers(0, 427 - h + 1))
        (out / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        image.crop((x, y, x + w, y + h)).save(out / f"c{i % 2}" / f"{i:05d}.jpg", quality=90)
    marker.touch()
    return out


def _raw_batch(files: list[str], size: int, variant: dict[str, Any]) -> pa.Table:
    """Format 1: decoded, resized, center-cropped uint8 pixels."""
    pixels, labels = [], []
    for i, file in enumerate(files):
        try:
            pixels.append(load_image(file, size, variant["interpolation"],
                                     variant["crop_pct"]).tobytes())
        except UNREADABLE:
            continue
        labels.append(i % 2)
    return pa.table({"label": pa.array(labels, pa.int32()),
                     "pixels": pa.array(pixels, pa.binary(size * size * 3))})


def prepared_bytes(folder: Path, size: int, work: Path, limit: int | None = None
                   ) -> dict[str, float]:
    """Bytes and seconds to prepare the images under `folder` both ways (one process, the
    same Parquet writer and shard size)."""
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))[:limit]
    variant = {"image_size": size, "interpolation": "bicubic", "crop_pct": 0.875}
    task = get_task("image")
    out: dict[str, float] = {"images": len(files),
                             "source": float(sum(os.path.getsize(f) for f in files))}
    for name in ("raw", "encoded"):
        start, total = time.time(), 0
        for shard, first in enumerate(range(0, len(files), ROWS_PER_SHARD)):
            chunk = files[first:first + ROWS_PER_SHARD]
            if name == "raw":
                table = _raw_batch(chunk, size, variant)
            else:
                source = pa.table({"key": chunk, "label": [i % 2 for i in range(len(chunk))]})
                table = task.prepare_batch(source, variant).drop_columns(["key"])
            path = work / f"{name}-{shard}.parquet"
            pq.write_table(table, path)
            total += path.stat().st_size
            path.unlink()
        out[f"{name}_bytes"], out[f"{name}_s"] = float(total), time.time() - start
    return out


class RawPixels(ImageClassification):
    """Format 1's trial read: fixed-size pixel bytes, one memcpy, a host-side flip."""

    def host_batch(self, batch: pa.Table, plan: TrialPlan, augment: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        size = int(plan.preprocessing["image_size"])
        column = batch.column("pixels").combine_chunks()
        data = np.frombuffer(column.buffers()[1], np.uint8, len(column) * size * size * 3,
                             column.offset * size * size * 3)
        pixels = torch.from_numpy(data.reshape(-1, size, size, 3).copy()).permute(0, 3, 1, 2)
        if augment is not None and plan.hflip:
            flip = torch.rand(len(pixels), generator=torch.Generator().manual_seed(augment)) < .5
            pixels = torch.where(flip[:, None, None, None], pixels.flip(3), pixels)
        labels = torch.from_numpy(batch.column("label").to_numpy().astype(np.int64))
        return pixels.contiguous(), labels


def raw_table(encoded: pa.Table, plan: TrialPlan) -> pa.Table:
    """The same rows as format 1 held them: the eval-transformed pixels of each image."""
    from automl.tasks.image_codec import eval_pixels

    size = int(plan.preprocessing["image_size"])
    pixels = [eval_pixels(b, plan.preprocessing).tobytes()
              for b in encoded.column("image").to_pylist()]
    return pa.table({"label": encoded.column("label"),
                     "pixels": pa.array(pixels, pa.binary(size * size * 3))})


def epoch_throughput(plan: TrialPlan, table: pa.Table, raw: bool) -> dict[str, float]:
    """One training epoch on one thread: samples/s and seconds spent preparing batches."""
    torch.set_num_threads(1)
    setup = setup_trial(plan, steps_per_epoch=table.num_rows // plan.batch_size)
    if raw:
        setup.task = RawPixels()
        setup.decoder = Decoder(0, setup.task)
    start = time.time()
    stats = train_epoch(setup, plan, 1, torch.device("cpu"),
                        local_batches(table, plan.batch_size, seed=0))
    seconds = time.time() - start
    return {"samples_per_s": stats.examples / seconds, "data_s": stats.data_s,
            "seconds": seconds}
