"""Score `automl combine`'s candidates on a second held-out set (issue 29's measurement).

    python bench/combine_holdout.py RUN data/bench/fashion_mnist_val2000
    python bench/combine_holdout.py RUN data/bench/rotten_tomatoes_val2000.csv

The run's own test split (1,000 examples in the demos) gives paired gains with ≈ 0.8-point
standard errors; this scores the same candidates — nothing is chosen again — on 2,000 more
examples no demo run uses (`bench/record_curves.py validation_data`): each trial's
checkpoint decodes the inputs with its own preprocessing, an ensemble averages its members'
probabilities, a soup is its own checkpoint. Prints accuracy ± SE and the paired gain over
the search's selected trial (bootstrap SE), with the run's test figures beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl.combine.result import COMBINED_JSON
from automl.export.score import load_for_inference
from automl.tasks import get_task
from automl.tasks.image_files import list_images


def examples(source: Path) -> tuple[list[str], list[str]]:
    """(inputs, label names): an image folder by class, or a CSV of text and label."""
    if source.is_dir():
        files = list_images([str(source)])
        return files, [Path(f).parent.name for f in files]
    table = pd.read_csv(source)
    return table["text"].astype(str).tolist(), table["label"].astype(str).tolist()


def probabilities(checkpoint: str, inputs: list[str], names: list[str]) -> np.ndarray:
    """The checkpoint's class probabilities on `inputs`, columns in `names` order."""
    plan, model, _ = load_for_inference(checkpoint)
    model = model.cpu()
    task = get_task(plan.task)
    out = []
    with torch.inference_mode():
        for _, batch in task.predict_batches(inputs, Path(checkpoint), plan, 64):
            out.append(task.forward(model, batch).float().softmax(-1).numpy())
    order = [list(plan.classes).index(n) for n in names]
    return np.concatenate(out)[:, order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("source", type=Path)
    args = parser.parse_args()
    combined = json.loads((args.run / COMBINED_JSON).read_text())
    board = pd.read_csv(args.run / "leaderboard.csv", dtype={"trial_id": str})
    checkpoints = dict(zip(board["trial_id"], board["checkpoint"], strict=True))
    inputs, labels = examples(args.source)
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    cache: dict[str, np.ndarray] = {}

    def of(checkpoint: str) -> np.ndarray:
        if checkpoint not in cache:
            cache[checkpoint] = probabilities(checkpoint, inputs, names)
        return cache[checkpoint]

    rows = []
    for c in combined["candidates"]:
        if c["kind"] == "ensemble":
            p = sum(w * of(checkpoints[t]) for t, w in c["members"].items())
        else:
            p = of(c["checkpoint"])
        rows.append((c, np.asarray(p).argmax(1) == y))
    base = rows[0][1]
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(1000)]
    print(f"{args.run}: {len(y)} held-out examples from {args.source}; chosen: "
          f"{combined['chosen']}")
    print(f"{'candidate':<28}{'held-out':>16}{'gain':>16}{'run test':>10}{'test gain':>11}")
    for c, right in rows:
        se = right.std() / np.sqrt(len(right))
        gain = right.mean() - base.mean()
        gain_se = float(np.std([right[d].mean() - base[d].mean() for d in draws]))
        test = c.get("test") or {}
        print(f"{c['name']:<28}{right.mean():>9.4f}±{se:.4f}{gain:>+9.4f}±{gain_se:.4f}"
              f"{test.get('value', float('nan')):>10.4f}{test.get('gain', 0.0):>+11.4f}")


if __name__ == "__main__":
    main()
