"""One training step and one eval batch of a demo model, default layout vs channels-last
(what `automl.trial.steps.fast_layout` does to every trial's model), side by side.

    python bench/channels_last.py [--size 96] [--batch 64] [--model tf_efficientnet_lite0]

One thread (a demo trial's CPU); the top 2 of 8 layer groups train, as the demo's trials do.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import timm
import torch


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool,
                 repeats: int = 3) -> float:
    """Mean seconds of a forward (+ backward and AdamW step when `train`) after a warm-up."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model.train(train)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        if train:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
        else:
            with torch.inference_mode():
                model(x)
        times.append(time.perf_counter() - started)
    return sum(times[1:]) / repeats


def main() -> None:
    """Print both layouts' step and eval times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    found = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model: Any = timm.create_model(args.model, num_classes=10)
        for p in model.parameters():
            p.requires_grad_(False)
        for part in (*model.blocks[-2:], model.conv_head, model.bn2, model.classifier):
            for p in part.parameters():
                p.requires_grad_(True)
        model = model.to(memory_format=layout)
        found[str(layout)] = (step_seconds(model, x, y, True), step_seconds(model, x, y, False))
    (train_a, eval_a), (train_b, eval_b) = found.values()
    print(f"{args.model}, batch {args.batch}, {args.size} px, 1 thread")
    print(f"train step: default {train_a:.2f} s, channels-last {train_b:.2f} s "
          f"({train_a / train_b:.2f}×)")
    print(f"eval batch: default {eval_a:.2f} s, channels-last {eval_b:.2f} s "
          f"({eval_a / eval_b:.2f}×)")


if __name__ == "__main__":
    main()
