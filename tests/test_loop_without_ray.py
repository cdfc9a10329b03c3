"""The training loop runs where Ray is not installed (a GPU check on a bare machine): every
epoch trains, evaluates, checkpoints and reports through a `Worker` that is not Ray's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import json, sys, tempfile, time
from pathlib import Path
sys.modules["ray"] = None  # `import ray` now fails, as on a machine without it
import torch
from automl.trial.context import LoopSettings
from automl.trial.loop import train_loop
from tests.helpers import tiny_plan, tiny_tables


class Rows:
    def __init__(self, table):
        self.table = table

    def iter_batches(self, batch_size, batch_format, **shuffle):
        for start in range(0, self.table.num_rows, batch_size):
            yield self.table.slice(start, batch_size)


class LocalWorker:
    rank, world = 0, 1

    def __init__(self, tables):
        self.data, self.reports = {k: Rows(v) for k, v in tables.items()}, []

    def device(self): return torch.device("cpu")
    def dataset(self, name): return self.data[name]
    def latest_checkpoint(self): return None
    def prepare_model(self, model): return model
    def count_start(self): return None
    def nodes(self): return "this-machine"

    def report(self, metrics, checkpoint_dir):
        saved = sorted(p.name for p in checkpoint_dir.iterdir())
        self.reports.append({**metrics, "saved": saved})


tables, classes = tiny_tables(Path(sys.argv[1]))
worker = LocalWorker(tables)
train_loop(LoopSettings(plan=tiny_plan(classes), trial_start=time.time()), worker)
print(json.dumps(worker.reports))
'''


def test_the_loop_trains_checkpoints_and_reports_without_ray(image_folder: Path) -> None:
    import json

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(image_folder)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(0 <= r["val_accuracy"] <= 1 and r["worker_nodes"] == "this-machine"
               for r in reports)
    assert {"model.safetensors", "plan.json", "train_state.pt",
            "val_predictions.safetensors"} <= set(reports[-1]["saved"])
    assert reports[-1]["train_time_s"] >= reports[0]["train_time_s"] > 0
