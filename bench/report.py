"""How long the leaderboard and the HTML report take for a 50-trial run (synthetic history:
4 backbones × scratch/pretrained, 10 epochs, some stopped early and errored).

    .venv/bin/python bench/report.py [--trials 50] [--epochs 10]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from automl.report import build_report
from automl.runs.history import event, load_records
from automl.runs.leaderboard import build_leaderboard
from automl.trial.context import SearchContext


def _write_history(path: Path, trials: int, epochs: int) -> dict:
    rng = random.Random(0)
    backbones = [f"b{i}:{w}" for i in range(4) for w in ("package", "scratch")]
    static = {"task": "image", "classes": ["a", "b"], "epochs": epochs, "seed": 0,
              "precision": "fp32", "grad_clip": 1.0,
              "backbones": {b: {"name": b.split(":")[0], "weights": b.split(":")[1]}
                            for b in backbones},
              "preprocessing": {b: {} for b in backbones},
              "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "use_gpu": False}}
    lines = []
    for t in range(trials):
        trial = f"t{t:03d}"
        params = {"backbone": rng.choice(backbones), "unfreeze_fraction": rng.choice([0, .5, 1]),
                  "head_lr": 10 ** rng.uniform(-4, -1), "backbone_lr": 10 ** rng.uniform(-5, -2),
                  "weight_decay": 0.0, "batch_size": 32}
        lines.append(event("start", trial, params=params))
        ran = epochs if rng.random() < 0.6 else rng.randint(1, epochs - 1)
        acc = rng.uniform(0.3, 0.6)
        for epoch in range(1, ran + 1):
            acc = min(1.0, acc + rng.uniform(-0.02, 0.06))
            lines.append(event("result", trial, metrics={
                "epoch": epoch, "val_accuracy": acc, "train_accuracy": min(1, acc + 0.05),
                "time_total_s": 10.0 * epoch, "trainable_params": 1e5, "total_params": 1e6,
                "latency_ms": 5.0, "samples_per_s": 300.0, "peak_memory_mb": 900.0,
                "train_s": 8.0 * epoch, "checkpoint_path": f"/ck/{trial}/{epoch}"}))
        error = "TrialFailed: loss nan" if rng.random() < 0.05 else None
        lines.append(event("end", trial, error=error))
    path.write_text("\n".join(lines) + "\n")
    return static


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        static = _write_history(Path(tmp) / "trials.jsonl", args.trials, args.epochs)
        start = time.perf_counter()
        records = load_records(Path(tmp), tmp)
        board = build_leaderboard(records, SearchContext.from_json(static))
        t_board = time.perf_counter() - start
        import matplotlib.pyplot  # noqa: F401 - imported once, as the CLI does

        start = time.perf_counter()
        page = build_report(board, records, {}, "bench", "finished")
        t_report = time.perf_counter() - start
    print(f"{args.trials} trials × ≤{args.epochs} epochs: board (read history + build) "
          f"{t_board:.2f} s, HTML report {t_report:.2f} s ({len(page) / 1e6:.2f} MB), "
          f"report/board {t_report / t_board:.0f}×")


if __name__ == "__main__":
    main()
