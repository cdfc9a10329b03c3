"""Text recipe candidates measured side by side on held-back reviews, with the product's own
trial code (`setup_trial` / `train_epoch` / `evaluate`), no Ray.

all-MiniLM-L6-v2 from its wheel, mean pooling, top 2 of 7 groups + head (AdamW, head LR
1e-3, encoder LR 5e-5, wd 0.01), batch 32, max_length 64, 2 epochs; trained on the demo's
table (`data/rotten_tomatoes.csv`, its 80 % training split) and scored on N fresh/rotten
snippets the demo's table left out (`bench/heldout.py`), two seeds each.

    python bench/text_recipe.py [--n 2000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import pyarrow as pa
import torch

from automl.config.parse import from_dict
from automl.data.batches import local_batches
from automl.data.shards import prepare_local
from automl.tasks import get_task
from automl.trial.plan import TrialPlan
from automl.trial.steps import evaluate, setup_trial, train_epoch

CANDIDATES: dict[str, dict[str, Any]] = {
    "constant (default)": {},
    "cosine, warm-up 10 %, floor 0.3": {"lr_schedule": "cosine", "warmup": 0.1,
                                        "min_lr_ratio": 0.3},
    "constant + label smoothing 0.1": {"label_smoothing": 0.1},
    "constant + EMA 0.99": {"ema_decay": 0.99},
}
NAME = "sentence-transformers/all-MiniLM-L6-v2"


def held_back_table(task: Any, pre: dict[str, Any], n: int) -> pa.Table:
    """The held-back snippets tokenized as prepared rows."""
    from heldout import held_back_reviews  # beside this script

    texts, labels = held_back_reviews(n // 2)
    classes = ["fresh", "rotten"]
    source = pa.table({"key": [str(i) for i in range(len(texts))], "text": texts,
                       "label": [classes.index(c) for c in labels]})
    return task.prepare_batch(source, task.variant(pre)).drop_columns(["key"])


def main() -> None:
    """Train each candidate per seed; print held-out accuracy and its mean per candidate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = from_dict({"task": "text", "data": {"path": "data/rotten_tomatoes.csv"},
                        "backbones": [{"name": NAME, "weights": "package"}],
                        "space": {"max_length": 64}})
    task = get_task("text")
    catalog = task.scan(config.data)
    pre = task.preflight(config.backbones[0], config)
    tables = prepare_local(task, catalog, config.data, pre)
    test = held_back_table(task, pre, args.n)
    for name, knobs in CANDIDATES.items():
        scores = []
        for seed in args.seeds:
            plan = TrialPlan(task="text", backbone=NAME, weights="package",
                             classes=catalog.classes, preprocessing=pre,
                             unfreeze_fraction=0.29, head_lr=1e-3, backbone_lr=5e-5,
                             layer_decay=1.0, weight_decay=0.01, batch_size=32, epochs=2,
                             seed=seed, max_length=64, pooling="mean", **knobs)
            started = time.time()
            setup = setup_trial(plan, tables["train"].num_rows // 32 + 1)
            for epoch in (1, 2):
                train_epoch(setup, plan, epoch, torch.device("cpu"),
                            local_batches(tables["train"], 32, seed=seed * 10 + epoch))
            correct, count, _ = evaluate(setup, plan, torch.device("cpu"),
                                         local_batches(test, 128)).tolist()
            scores.append(correct / count)
            print(f"  {name:34s} seed {seed}: {scores[-1]:.4f} ({time.time() - started:.0f} s)",
                  flush=True)
        print(f"{name:36s} mean {sum(scores) / len(scores):.4f} over {len(test)} held-back "
              "snippets", flush=True)


if __name__ == "__main__":
    main()
