"""Searches on a multi-node Ray cluster on this machine (raylets on loopback, Ray's own
`cluster_utils.Cluster`): DDP workers on two nodes, and a node lost in the middle of a search."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from automl.api import SearchResult, run_search
from automl.config.parse import from_dict
from automl.config.schema import Config

pytestmark = pytest.mark.integration


def _config(images: Path, cache: Path, epochs: int = 3, image_size: int = 64,
            **resources: Any) -> Config:
    return from_dict({
        "task": "image",
        "data": {"path": str(images), "val_fraction": 0.25, "image_size": image_size,
                 "cache_dir": str(cache)},
        "backbones": [{"name": "test_resnet", "weights": "scratch"}],
        "space": {"unfreeze_fraction": 1.0, "head_lr": {"low": 0.003, "high": 0.03},
                  "backbone_lr": 0.001, "batch_size": 8},
        "train": {"epochs": epochs, "seed": 0, "max_restarts": 2},
        # grace_period = epochs: ASHA stops no trial, so each one's fate is the node's doing.
        "search": {"num_samples": resources.pop("num_samples", 1), "seed": 0,
                   "grace_period": epochs},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, **resources},
    })


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A head node with no CPU (multi-worker trials' drivers need none); tests add worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        yield made
    finally:
        ray.shutdown()
        made.shutdown()


def _node_ids(worker_nodes: str) -> list[str]:
    return [entry.split("/")[1] for entry in worker_nodes.split(",")]


def test_ddp_trial_across_two_nodes(cluster: Any, tmp_path: Path) -> None:
    from tests.conftest import write_image_folder

    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    images = write_image_folder(tmp_path / "images", per_class=16)
    config = _config(images, tmp_path / "cache", workers_per_trial=2)
    result = run_search(config, run_dir=tmp_path / "run", address=cluster.address,
                        log=lambda _: None)
    row = result.leaderboard.iloc[0]
    assert row["status"] == "finished" and row["epochs"] == 3, row["error"]
    ranks = _node_ids(row["worker_nodes"])
    assert len(ranks) == 2 and len(set(ranks)) == 2  # one DDP rank on each node
    assert result.export_dir is not None


def _nodes_running_train_workers() -> set[str]:
    """Nodes that host a live training process now: a Ray Train worker, or a Tune trial that
    trains in its own process (Ray's state API: no file syncing lag)."""
    from ray.util.state import list_actors

    # Ray names Tune's trial class `ImplicitFunc`, or `wrap_function.<locals>.ImplicitFunc`
    # once an earlier search of this process registered it (a full test run).
    return {actor.node_id for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
            if actor.node_id is not None
            and actor.class_name.rsplit(".", 1)[-1] in ("RayTrainWorker", "ImplicitFunc")}


def test_search_survives_losing_a_worker_node(cluster: Any, tmp_path: Path) -> None:
    """Three 1-worker trials, two at a time, on three 1-CPU worker nodes (the head has no
    CPU; each trial trains in its Tune trial process on a worker node). A node is removed
    while its trial runs: Tune restarts that trial on another node from its checkpoint, the
    trial started after the loss is placed on the nodes left, and every trial is accounted
    for."""
    import ray

    from tests.conftest import write_image_folder

    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    images = write_image_folder(tmp_path / "images", per_class=60, size=96)
    config = _config(images, tmp_path / "cache", num_samples=3, epochs=6, image_size=96,
                     max_concurrent_trials=2)
    run = tmp_path / "run"
    results: list[SearchResult] = []
    search = threading.Thread(target=lambda: results.append(
        run_search(config, run_dir=run, address=cluster.address, log=lambda _: None)))
    started = time.time()
    search.start()
    while not ray.is_initialized():
        time.sleep(0.1)
    # All raylets share 127.0.0.1, so the driver attaches to one of them; that one stays.
    driver = ray._private.worker.global_worker.node._raylet_socket_name
    removable = [n for n in nodes if n._raylet_socket_name != driver]
    # Remove a node once a trial has checkpointed and trains there. Polling
    # result files instead missed the window on a fast machine: Tune syncs them late.
    victim = None
    while search.is_alive() and victim is None and time.time() < started + 400:
        if any(run.rglob("checkpoint_*")):
            busy = _nodes_running_train_workers()
            victim = next((n for n in removable if n.node_id in busy), None)
        time.sleep(0.2)
    assert victim is not None, "no trial trained on a removable node"
    removed_at = time.time() - started
    cluster.remove_node(victim)
    search.join(timeout=600)
    assert not search.is_alive()
    (result,) = results
    board = result.leaderboard.set_index("trial_id")
    assert len(board) == 3 and board.index.is_unique
    # Every trial ran to the end (the third was placed after the loss), none errored.
    assert (board["status"] == "finished").all(), board["error"]
    assert (board["epochs"] == 6).all()
    # Only the trial whose worker was on the removed node restarted, and it left that node.
    restarted = board[board["restarts"] >= 1]
    assert len(restarted) == 1, board[["status", "restarts", "worker_nodes"]]
    (trial,), moved = restarted.index, restarted.iloc[0]
    assert victim.node_id[:8] not in moved["worker_nodes"]
    print(f"node removed at {removed_at:.0f} s; search {result.wall_time_s:.0f} s; "
          f"restarted trial {moved['trial_time_s']:.0f} s vs "
          f"{board.drop(index=trial)['trial_time_s'].mean():.0f} s for the others")


def test_a_submitted_job_searches_on_the_jobs_cluster(image_folder: Path, tmp_path: Path
                                                       ) -> None:
    """`ray job submit --working-dir . -- automl search SPACE --storage DIR` on a real
    `ray start` head (loopback, own ports and temp dir), without `--address auto`: the
    driver finds the job's cluster (it used to start a second Ray and fail in preparation)."""
    import os
    import secrets
    import shutil
    import signal
    import socket
    import subprocess
    import sys

    import pandas as pd

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    repo, venv_bin = Path(__file__).parents[1], Path(sys.executable).parent
    ray_cli = str(venv_bin / "ray")
    temp = Path(f"/tmp/automl-job-{secrets.token_hex(3)}")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update({"RAY_AUTH_MODE": "disabled", "PATH": f"{venv_bin}:{env.get('PATH', '')}"})
    dashboard = free_port()
    space = tmp_path / "space.yaml"
    space.write_text(f"data: {{path: {image_folder}, val_fraction: 0.25, image_size: 32}}\n"
                     "backbones: [{name: test_resnet, weights: scratch}]\n"
                     "space: {unfreeze_fraction: 1.0, batch_size: 8}\n"
                     "train: {epochs: 1}\nsearch: {num_samples: 1, grace_period: 1}\n")
    subprocess.run([ray_cli, "start", "--head", "--port", str(free_port()), "--num-cpus", "2",
                    "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                    "--dashboard-agent-listen-port", str(free_port()), "--temp-dir", str(temp),
                    "--disable-usage-stats"], env=env, check=True, capture_output=True,
                   timeout=120)
    try:
        job = subprocess.run(
            [ray_cli, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}",
             "--working-dir", str(repo), "--", "automl", "search", str(space), "--storage",
             str(tmp_path / "runs")], env=env, capture_output=True, text=True, timeout=480)
        log = job.stdout[-4000:] + job.stderr[-2000:]
        assert job.returncode == 0, log
        assert "RuntimeEnvSetupError" not in log and "succeeded" in log, log
        (run,) = (tmp_path / "runs").glob("space-*")
        board = pd.read_csv(run / "leaderboard.csv")
        assert board["status"].tolist() == ["finished"]
        assert (run / "export" / "model.safetensors").is_file()
    finally:
        # Stop this cluster by its own processes (never `ray stop`: it stops every Ray here).
        found = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True)
        for pid in map(int, found.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
