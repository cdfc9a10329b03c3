from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automl.data.batches import EpochBatches, local_batches
from automl.errors import TrialFailed
from automl.trial.steps import setup_trial, train_epoch
from tests.helpers import CPU, fit, tiny_plan, tiny_tables


def _run(folder: Path, **changes: object) -> tuple[float, float]:
    tables, classes = tiny_tables(folder)
    plan = tiny_plan(classes, **changes)
    return fit(setup_trial(plan), plan, tables)


def test_training_learns_the_tiny_task(tmp_path: Path) -> None:
    from tests.conftest import write_image_folder

    folder = write_image_folder(tmp_path / "imgs", per_class=20)
    _, accuracy = _run(folder, backbone="test_efficientnet", unfreeze_fraction=0.0,
                       backbone_lr=None, head_lr=0.03)
    assert accuracy >= 0.8


def test_same_plan_and_seed_gives_same_result(image_folder: Path) -> None:
    assert _run(image_folder) == _run(image_folder)
    assert _run(image_folder) != _run(image_folder, seed=1)


def test_linear_probe_changes_only_the_head(image_folder: Path) -> None:
    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, unfreeze_fraction=0.0, backbone_lr=None)
    setup = setup_trial(plan)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    train_epoch(setup, plan, 1, CPU, local_batches(tables["train"], 8, seed=0))
    after = setup.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    assert setup.unfreeze_depth == 0


def _matmul_dtypes(folder: Path, **changes: object) -> tuple[set[torch.dtype], float]:
    """The dtypes every Linear / Conv2d layer computed in during training and evaluation."""
    tables, classes = tiny_tables(folder)
    plan = tiny_plan(classes, **changes)
    setup = setup_trial(plan)
    seen: set[torch.dtype] = set()
    for module in setup.model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    _, accuracy = fit(setup, plan, tables)
    return seen, accuracy


def test_bf16_autocast_path_runs_on_cpu(image_folder: Path) -> None:
    seen, accuracy = _matmul_dtypes(image_folder, precision="bf16")
    assert seen == {torch.bfloat16}  # every matmul and convolution ran in bf16
    assert 0.0 <= accuracy <= 1.0
    assert _matmul_dtypes(image_folder)[0] == {torch.float32}  # and fp32 stays fp32


def test_nan_loss_fails_the_trial_with_a_reason(image_folder: Path) -> None:
    with pytest.raises(TrialFailed, match="loss became"):
        _run(image_folder, head_lr=1e12, backbone_lr=1e12, grad_clip=None)


def test_hflip_off_changes_the_training_data(image_folder: Path) -> None:
    assert _run(image_folder, hflip=False) != _run(image_folder)


def test_hflip_mirrors_the_pixels_of_the_flipped_training_images(image_folder: Path) -> None:
    from automl.tasks import get_task

    tables, classes = tiny_tables(image_folder)
    task, batch = get_task("image"), tables["train"].slice(0, 16)
    plan = tiny_plan(classes)
    plain, _ = task.collate(batch, plan, CPU)  # no generator: evaluation, never flipped
    flipped, _ = task.collate(batch, plan, CPU, augment=0)
    mirrored = [torch.equal(f, p.flip(2)) and not torch.equal(f, p)
                for f, p in zip(flipped, plain, strict=True)]
    unchanged = [torch.equal(f, p) for f, p in zip(flipped, plain, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))  # nothing else
    assert 4 <= sum(mirrored) <= 12  # about half of 16, each mirrored left to right
    off, _ = task.collate(batch, tiny_plan(classes, hflip=False), CPU,
                          augment=0)
    assert torch.equal(off, plain)


def test_steps_per_epoch_continues_across_passes() -> None:
    """With steps, an epoch takes that many batches and the next one picks up where it
    stopped, starting a new (reshuffled) pass when the data runs out."""
    import pyarrow as pa

    def one_pass(number: int):  # type: ignore[no-untyped-def]
        # Five batches of two rows, then a batch of one row (dropped: BatchNorm).
        return iter([pa.table({"p": [number] * 2, "i": [i] * 2}) for i in range(5)]
                    + [pa.table({"p": [number], "i": [9]})])

    stream = EpochBatches(one_pass, steps=3)
    seen = [tuple((b["p"][0].as_py(), b["i"][0].as_py()) for b in stream.epoch())
            for _ in range(3)]
    assert seen == [((1, 0), (1, 1), (1, 2)), ((1, 3), (1, 4), (2, 0)), ((2, 1), (2, 2), (2, 3))]
    assert [len(list(EpochBatches(one_pass).epoch())) for _ in range(2)] == [5, 5]
    assert list(EpochBatches(lambda n: iter([]), steps=4).epoch()) == []


def test_lp_ft_under_ddp_trains_like_a_single_process(image_folder: Path, tmp_path: Path
                                                      ) -> None:
    """DDP cannot switch the backbone's requires_grad; its LP phase must still leave AdamW's
    state for the backbone empty, so 1 and N workers train the same plan the same way."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, lp_ft_epochs=1, weight_decay=0.01)

    def train(wrap: bool) -> tuple[dict[str, torch.Tensor], int]:
        setup = setup_trial(plan)
        if wrap:
            setup.model = DistributedDataParallel(setup.model)
        train_epoch(setup, plan, 1, CPU, local_batches(tables["train"], 8, seed=0))
        stateful = sum(1 for p in setup.model.parameters() if setup.optimizer.state.get(p))
        train_epoch(setup, plan, 2, CPU, local_batches(tables["train"], 8, seed=1))
        inner = getattr(setup.model, "module", setup.model)
        return {k: v.clone() for k, v in inner.state_dict().items()}, stateful

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        wrapped, wrapped_stateful = train(wrap=True)
    finally:
        dist.destroy_process_group()
    plain, plain_stateful = train(wrap=False)
    assert wrapped_stateful == plain_stateful == 2  # the head's weight and bias only
    assert all(torch.allclose(plain[k].float(), wrapped[k].float(), atol=1e-6) for k in plain)


def test_validation_counts_stay_on_the_worker_device(image_folder: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """NCCL (GPU workers) reduces only device tensors; counts gathered on the host fail at
    the first evaluation. `meta` stands in for a GPU: the counts must be built there and
    handed to all_reduce as they are."""
    from automl.trial.steps import evaluate, sum_over_ranks

    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes)
    setup = setup_trial(plan)
    meta = torch.device("meta")
    setup.model.to(meta)
    totals = evaluate(setup, plan, meta, local_batches(tables["val"], 64))
    assert totals.device == meta and totals.shape == (2 + plan.num_classes ** 2,)

    reduced: list[torch.Tensor] = []
    monkeypatch.setattr(torch.distributed, "all_reduce", reduced.append)
    counts = torch.tensor([3.0, 4.0, 1.5], dtype=torch.float64)
    assert sum_over_ranks(counts, world=2) == [3.0, 4.0, 1.5] and reduced[0] is counts


def test_stream_resumes_where_a_checkpoint_left_it() -> None:
    import pyarrow as pa

    def one_pass(number: int):  # type: ignore[no-untyped-def]
        return iter([pa.table({"p": [number] * 2, "i": [i] * 2}) for i in range(5)])

    def ids(batches) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
        return [(b["p"][0].as_py(), b["i"][0].as_py()) for b in batches]

    for steps in (3, 5, None):
        straight = EpochBatches(one_pass, steps)
        expected = [ids(straight.epoch()) for _ in range(4)]
        first = EpochBatches(one_pass, steps)
        seen = [ids(first.epoch()) for _ in range(2)]
        restarted = EpochBatches(one_pass, steps)
        restarted.resume(first.position())
        seen += [ids(restarted.epoch()) for _ in range(2)]
        assert seen == expected, steps


RECIPE = {"lr_schedule": "cosine", "warmup": 0.2, "min_lr_ratio": 0.1, "label_smoothing": 0.1,
          "augment": "trivialaugment", "crop_scale": 0.5, "random_erasing": 0.5, "mixup": 0.2,
          "cutmix": 1.0, "ema_decay": 0.9}


@pytest.mark.parametrize("recipe", [{}, RECIPE], ids=["plain", "full-recipe"])
def test_resuming_from_a_checkpoint_trains_like_no_interruption(recipe: dict, image_folder: Path,
                                                               tmp_path: Path) -> None:
    """Weights, optimizer moments and RNG states come back: epoch 2 after a restart gives the
    same weights as epoch 2 straight after epoch 1."""
    from automl.trial.checkpoints import (
        TrainState,
        load_train_state,
        save_checkpoint,
        save_train_state,
    )

    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, lp_ft_epochs=1, **recipe)
    setup = setup_trial(plan, steps_per_epoch=4)
    train_epoch(setup, plan, 1, CPU, local_batches(tables["train"], 8, seed=1))
    save_checkpoint(setup.evaluated, plan, tmp_path, val_accuracy=0.5, epoch=1)
    save_train_state(tmp_path, setup.optimizer, TrainState(epoch=1, best=0.5, restarts=0),
                     setup.scheduler, setup.model if setup.ema is not None else None)
    torch.manual_seed(123)  # whatever ran after the checkpoint must not matter
    train_epoch(setup, plan, 2, CPU, local_batches(tables["train"], 8, seed=2))
    straight = {k: v.clone() for k, v in setup.model.state_dict().items()}
    straight_eval = {k: v.clone() for k, v in setup.evaluated.state_dict().items()}
    lrs = [g["lr"] for g in setup.optimizer.param_groups]

    restarted = setup_trial(plan, steps_per_epoch=4)
    state = load_train_state(tmp_path, restarted.model, restarted.optimizer,
                             restarted.scheduler, restarted.ema)
    assert (state.epoch, state.best, state.restarts) == (1, 0.5, 1)
    train_epoch(restarted, plan, 2, CPU, local_batches(tables["train"], 8, seed=2))
    after = restarted.model.state_dict()
    assert all(torch.equal(straight[k], after[k]) for k in straight)
    assert all(torch.equal(straight_eval[k], v) for k, v in restarted.evaluated.state_dict()
               .items())
    assert [g["lr"] for g in restarted.optimizer.param_groups] == lrs
    if recipe:  # the schedule moved, and the EMA is not the raw model
        assert lrs != [g["initial_lr"] for g in setup.optimizer.param_groups]
        assert not all(torch.equal(straight[k], straight_eval[k]) for k in straight)


def test_group_starts_are_counted_in_the_trial_storage(tmp_path: Path) -> None:
    import pyarrow.fs

    from automl.trial.checkpoints import count_group_start

    class Storage:  # the two fields of Ray Train's StorageContext it reads
        storage_filesystem = pyarrow.fs.LocalFileSystem()
        experiment_fs_path = str(tmp_path / "trial")

    assert [count_group_start(Storage()) for _ in range(3)] == [0, 1, 2]
    assert count_group_start(object()) is None  # Ray changed the context: no count
