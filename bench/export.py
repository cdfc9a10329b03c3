"""Export formats side by side on one export: size on disk, and predict latency per sample
for each runtime, measured in one run on the same images.

    .venv/bin/python bench/export.py [EXPORT_DIR] [--inputs PATH] [--count 64]

Defaults: the demo's export (`runs/demo_vision/export`) and the demo data under `data/`
(images for an image model, the texts of `data/rotten_tomatoes.csv` for a text model).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd

import automl
from automl.tasks.image_files import list_images


def _per_sample_ms(model: automl.ExportedModel, files: list[str], batch_size: int) -> float:
    """Median of 3 timed passes after a full warm-up pass (kernels are picked per shape)."""
    model.predict(files, batch_size=batch_size)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        model.predict(files, batch_size=batch_size)
        times.append(1000 * (time.perf_counter() - started) / len(files))
    return statistics.median(times)


def _single_ms(model: automl.ExportedModel, files: list[str], repeats: int = 20) -> float:
    for file in files[:5]:  # warm-up
        model.predict([file])
    times = []
    for file in files[:repeats]:
        started = time.perf_counter()
        model.predict([file])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    """Print the table (sizes from the manifest; latencies measured here)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("export", nargs="?", default="runs/demo_vision/export")
    parser.add_argument("--inputs", help="image folder or text table (default: demo data)")
    parser.add_argument("--count", type=int, default=64)
    args = parser.parse_args()
    root = Path(args.export)
    manifest = json.loads((root / "manifest.json").read_text())
    task = json.loads((root / "config.json").read_text())["task"]
    if task == "text":  # a benchmark may pick its inputs by task; the product does not
        table = args.inputs or "data/rotten_tomatoes.csv"
        files = pd.read_csv(table)["text"].astype(str).tolist()[:args.count]
    else:
        images = list_images([args.inputs or "data/fashion_mnist"])
        files = images[:: max(1, len(images) // args.count)][:args.count]
    print(f"export {root} ({manifest['checked_on']}), {len(files)} {task} inputs")
    print(f"{'format':<12} {'size MiB':>9} {'max|Δ logit|':>13} {'export s':>9}")
    for check in manifest["checks"]:
        size = sum(v["bytes"] for k, v in manifest["files"].items()
                   if k == check["path"] or k.startswith(check["path"] + "/"))
        print(f"{check['name']:<12} {size / 2**20:>9.1f} {check['max_abs_diff']:>13.2g} "
              f"{check['seconds']:>9.1f}")
    print(f"\n{'runtime':<8} {'batch-1 ms/sample':>18} {'batch-32 ms/sample':>19}")
    results = {}
    for runtime in ("torch", "onnx"):
        model = automl.load(root, runtime=runtime)
        results[runtime] = (_single_ms(model, files), _per_sample_ms(model, files, 32))
        print(f"{runtime:<8} {results[runtime][0]:>18.2f} {results[runtime][1]:>19.2f}")
    print(f"\nonnx / torch: batch 1 {results['onnx'][0] / results['torch'][0]:.2f}×, "
          f"batch 32 {results['onnx'][1] / results['torch'][1]:.2f}× (includes reading and "
          "preprocessing each input, as `automl predict` does)")


if __name__ == "__main__":
    main()
