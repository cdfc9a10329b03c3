"""The same search on 1 node × 2 CPUs and on 2 nodes × 1 CPU, side by side in one run.

Both clusters are Ray's own `cluster_utils.Cluster` on this machine (raylets on loopback; the
head holds no CPU, only the trial drivers), so the difference is what spreading trials and
DDP ranks over nodes costs: cross-node object transfers, more raylets, gloo over TCP.

    python bench/multinode.py [--num-samples N] [--workers-per-trial W]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from automl.api import run_search
from automl.config.parse import from_dict
from tests.conftest import write_image_folder


def _search(nodes: list[int], work: Path, num_samples: int, workers: int) -> tuple[float, str]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for cpus in nodes:
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    config = from_dict({
        "task": "image",
        "data": {"path": str(work / "images"), "val_fraction": 0.25, "image_size": 64,
                 "cache_dir": str(work / "cache")},
        "backbones": [{"name": "test_resnet", "weights": "scratch"}],
        "space": {"unfreeze_fraction": 1.0, "head_lr": {"low": 0.003, "high": 0.03},
                  "batch_size": 16},
        "train": {"epochs": 3, "seed": 0},
        "search": {"num_samples": num_samples, "seed": 0, "grace_period": 3},
        "resources": {"workers_per_trial": workers, "cpus_per_worker": 1},
    })
    try:
        name = "x".join(map(str, nodes))
        result = run_search(config, run_dir=work / f"run-{name}", address=cluster.address,
                            log=lambda _: None)
        return result.wall_time_s, result.outcome
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--workers-per-trial", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_image_folder(work / "images", per_class=100, size=64)
        # Prepare once outside the timing (the cache is shared by both runs).
        _search([2], work, 1, 1)
        one, one_outcome = _search([2], work, args.num_samples, args.workers_per_trial)
        two, two_outcome = _search([1, 1], work, args.num_samples, args.workers_per_trial)
    print(f"{args.num_samples} trials × {args.workers_per_trial} worker(s), 3 epochs each")
    print(f"1 node × 2 CPUs : {one:6.1f} s  ({one_outcome})")
    print(f"2 nodes × 1 CPU : {two:6.1f} s  ({two_outcome})")
    print(f"ratio 2 nodes / 1 node: {two / one:.2f}×")


if __name__ == "__main__":
    main()
