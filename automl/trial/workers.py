"""Where a trial's training loop runs: the one loop in `automl.trial.loop` talks to a `Worker`.

- `RayTrainWorker`: a rank of a Ray Train `TorchTrainer` worker group (multi-worker trials:
  DDP, sharded data, Ray Train's checkpoint manager and restarts).
- `InProcessWorker`: the Tune trial's own process, for single-worker trials. Starting a worker
  group (controller actor, placement group, worker process, imports, process group, data
  split coordinator) costs ≈ 20 s here, more than many fine-tunes; this runs the same loop
  where Tune already placed the trial. Checkpoints go through Ray Train's own storage context
  and checkpoint manager (same directories, same `checkpoint_manager_snapshot.json`, same
  retention), so export, tracking and resumption cannot tell the two apart.

Both report the same metrics; `InProcessWorker` forwards them to Tune with the checkpoint
path, exactly what Ray's `TuneReportCallback` adds for a `TorchTrainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from automl import ray_internals
from automl.trial.checkpoints import count_group_start, retention


class Worker(Protocol):
    """What the training loop needs from where it runs."""

    rank: int
    world: int

    def device(self) -> torch.device: ...
    def dataset(self, name: str) -> Any: ...
    def latest_checkpoint(self) -> Any:
        """The `ray.train.Checkpoint` to resume from, or None for a fresh start."""
    def prepare_model(self, model: nn.Module) -> nn.Module: ...
    def count_start(self) -> int | None: ...
    def nodes(self) -> str:
        """`IP/node-id` of every rank, in rank order (for the board: where the trial ran)."""
    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...


class RayTrainWorker:
    """A Ray Train worker: everything goes through `ray.train`."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self._ctx = ctx

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def dataset(self, name: str) -> Any:
        import ray.train

        return ray.train.get_dataset_shard(name)

    def latest_checkpoint(self) -> Any:
        import ray.train

        return ray.train.get_checkpoint()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def count_start(self) -> int | None:
        return count_group_start(self._ctx.get_storage())

    def nodes(self) -> str:
        if self.world == 1:
            return _this_node()
        nodes: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(nodes, _this_node())
        return ",".join(str(n) for n in nodes)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        checkpoint = (ray.train.Checkpoint.from_directory(str(checkpoint_dir))
                      if checkpoint_dir is not None else None)
        ray.train.report(metrics, checkpoint=checkpoint)


def _this_node() -> str:
    import ray

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


class InProcessWorker:
    """The single rank of a trial trained in the Tune trial's process."""

    rank, world = 0, 1

    def __init__(self, datasets: dict[str, Any], storage_path: str, name: str, keep: str,
                 use_gpu: bool) -> None:
        StorageContext = ray_internals.storage_context()

        class _Manager(ray_internals.checkpoint_manager()):  # type: ignore[misc]
            def _notify(self) -> None:  # wakes asyncio waiters of the controller: none here
                pass

        self._datasets = datasets
        self._use_gpu = use_gpu
        self._storage = StorageContext(storage_path=storage_path, experiment_dir_name=name)
        self._manager = _Manager(retention(keep), self._storage)

    def device(self) -> torch.device:
        if self._use_gpu and torch.cuda.is_available():
            import ray

            # Ray sets CUDA_VISIBLE_DEVICES to this trial's GPU(s): the first is ours.
            return torch.device("cuda", 0) if ray.get_gpu_ids() else torch.device("cuda")
        return torch.device("cpu")

    def dataset(self, name: str) -> Any:
        return self._datasets[name]

    def nodes(self) -> str:
        return _this_node()

    def latest_checkpoint(self) -> Any:
        latest = self._manager.latest_checkpoint_result
        return latest.checkpoint if latest is not None else None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device())

    def count_start(self) -> int | None:
        return count_group_start(self._storage)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        from ray import tune
        from ray.train import Checkpoint

        reported = dict(metrics)
        if checkpoint_dir is not None:
            persisted = self._storage.persist_current_checkpoint(
                Checkpoint.from_directory(str(checkpoint_dir)),
                self._storage.make_default_checkpoint_dir_name())
            self._manager.register_checkpoint(ray_internals.training_report()(
                checkpoint=persisted, metrics=metrics, validation=False))
            reported["checkpoint_path"] = persisted.path
        tune.report(reported)


def in_process_supported() -> bool:
    """False when this Ray version moved or reshaped the internals `InProcessWorker` calls
    (checked by signature, `ray_internals`); trials then run in a TorchTrainer as
    multi-worker ones do."""
    return ray_internals.in_process_supported()
