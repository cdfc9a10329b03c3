"""The training loop of one trial: fine-tune its plan epoch by epoch on a `Worker` (a Ray
Train rank, or the Tune trial's own process: `automl.trial.workers`), reporting and checkpointing
every epoch; frozen epochs may train on cached features instead (`automl.trial.probe`).
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from automl.data.batches import EpochBatches
from automl.runs.history import CHECKPOINT_PATH
from automl.trial.checkpoints import (
    TrainState,
    checkpoint_metrics,
    load_train_state,
    save_checkpoint,
    save_train_state,
)
from automl.trial.classification import Evaluation
from automl.trial.context import LoopSettings
from automl.trial.measure import latency_ms, peak_memory_mb
from automl.trial.metrics import CONFUSION_KEY, EpochMetrics
from automl.trial.plan import TrialPlan
from automl.trial.predictions import PREDICTIONS_FILE, Collector, to_bytes
from automl.trial.probe import cached_probe
from automl.trial.steps import (
    TRAIN_SAMPLE,
    TrialSetup,
    evaluate,
    setup_trial,
    sum_over_ranks,
    train_epoch,
)
from automl.trial.workers import RayTrainWorker, Worker

SHUFFLE_BATCHES = 16
"""Local shuffle buffer, in batches: rows are mixed within this window on top of the global
shuffle done once at preparation."""


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker (a rank of a TorchTrainer): the trial loop through `ray.train`."""
    train_loop(LoopSettings.from_dict(config), RayTrainWorker())


def train_loop(settings: LoopSettings, worker: Worker) -> None:
    """Fine-tune one plan, report and checkpoint every epoch; after a lost worker, node or
    trial process this resumes from the latest checkpoint, exactly where it stopped."""
    torch.set_num_threads(max(1, settings.threads))
    t0 = time.time()
    plan = settings.plan
    setup = setup_trial(plan, planned_steps(settings, plan, worker.world),
                        settings.decode_workers)
    try:
        _train(settings, worker, setup, t0)
    finally:
        setup.decoder.close()


def _train(settings: LoopSettings, worker: Worker, setup: TrialSetup, t0: float) -> None:
    """`train_loop` once the trial is set up."""
    t_trial_start, plan = settings.trial_start, settings.plan
    rank, world = worker.rank, worker.world
    device = worker.device()
    train_batches = _shard_batches(worker, plan, settings.steps_per_epoch)
    state = TrainState()
    resumed = worker.latest_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as directory:
            state = load_train_state(Path(directory), setup.model, setup.optimizer,
                                     setup.scheduler, setup.ema)
            saved_metrics = checkpoint_metrics(Path(directory))
        train_batches.resume(state.stream)
        if state.epoch >= plan.epochs:
            # Stopped after its last checkpoint but before Tune received that epoch's
            # result: report it again (it is the trial's final result), train nothing.
            worker.report({**saved_metrics, CHECKPOINT_PATH: resumed.path}, None)
            return
    setup.model = worker.prepare_model(setup.model)
    timings = dataclasses.replace(
        state.timings,
        ray_startup_s=t0 - t_trial_start,
        setup_s=time.time() - t0,
        startup_s=time.time() - t_trial_start,
        first_step_at=state.timings.first_step_at or time.time(),
    )
    starts_before = worker.count_start() if rank == 0 else None
    state.restarts = max(state.restarts, starts_before or 0)
    nodes = worker.nodes()
    probe = cached_probe(worker, setup, plan, settings, device, state.epoch)
    if probe is not None:
        timings.features_s = probe.seconds
    latency: float | None = None
    train_sample: list[pa.Table] | None = None
    deadline = settings.deadline
    checkpoint_s = 0.0
    for epoch in range(state.epoch + 1, plan.epochs + 1):
        t = epoch_start = time.time()
        on_features = probe is not None and epoch <= probe.epochs
        if probe is not None and on_features:
            stats = probe.train_epoch(epoch)
        else:
            stats = train_epoch(setup, plan, epoch, device, train_batches.epoch(),
                                worker.rank)
        timings.train_time_s += time.time() - t
        timings.data_time_s += stats.data_s
        t = time.time()
        val = _val_batches(worker, plan)
        first = None
        if rank == 0 and latency is None:
            first = next(val, None)  # the latency sample: a batch evaluate reads anyway
            val = itertools.chain([first] if first is not None else [], val)
        keep = Collector()
        totals = (probe.evaluate(keep) if probe is not None and on_features
                  else evaluate(setup, plan, device, val, keep))
        if train_sample is None:  # read once: its rows are the same every epoch
            train_sample = list(_train_sample(worker, plan))
        seen = (probe.evaluate_train() if probe is not None and on_features
                else evaluate(setup, plan, device, train_sample))
        # Another epoch like this one would end after the search's deadline: this is the last.
        late = (deadline is not None and epoch < plan.epochs
                and time.time() + (time.time() - epoch_start + checkpoint_s) > deadline)
        train_totals = torch.tensor([stats.examples, late], dtype=totals.dtype)
        reduced = sum_over_ranks(torch.cat([totals, seen.to(totals.device),
                                            train_totals.to(totals.device)]), world)
        size = len(totals)
        val_eval = Evaluation.from_counts(reduced[:size], plan.num_classes)
        seen_eval = Evaluation.from_counts(reduced[size:2 * size], plan.num_classes)
        train_examples, late_ranks = reduced[2 * size:]
        timings.eval_time_s += time.time() - t
        timings.train_samples += train_examples
        if first is not None:
            latency = _latency(setup, plan, device, first)
        metrics = EpochMetrics(
            epoch=epoch,
            val_accuracy=val_eval.score("accuracy"),
            val_loss=val_eval.loss,
            val_examples=val_eval.examples,
            val_balanced_accuracy=val_eval.score("balanced_accuracy"),
            val_balanced_accuracy_se=val_eval.se("balanced_accuracy"),
            val_macro_f1=val_eval.score("macro_f1"),
            val_macro_f1_se=val_eval.se("macro_f1"),
            train_loss=stats.loss,
            train_accuracy=seen_eval.score("accuracy"),
            train_examples=stats.examples,
            samples_per_s=timings.train_samples / max(timings.train_time_s, 1e-9),
            peak_memory_mb=peak_memory_mb(device),
            unfreeze_depth=setup.unfreeze_depth,
            layer_groups=setup.layer_groups,
            trainable_params=setup.trainable_params,
            total_params=setup.total_params,
            worker_nodes=nodes,
            restarts=state.restarts,
            timings=dataclasses.replace(timings),
            latency_ms=latency,
            feature_cache=probe.cache if probe is not None else None,
            out_of_time=bool(late_ranks),
        ).to_dict()
        state.epoch, state.best = epoch, max(state.best, val_eval.score("accuracy"))
        state.stream, state.timings = train_batches.position(), dataclasses.replace(timings)
        predictions = keep.gathered(world)
        t = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                if predictions is not None:  # what soups and ensembles combine
                    (Path(tmp) / PREDICTIONS_FILE).write_bytes(to_bytes(predictions))
                # The confusion matrix stays beside the weights (K² numbers per epoch would
                # swell the run's history): the report reads the selected checkpoint's.
                save_checkpoint(setup.evaluated, plan, Path(tmp), **metrics,
                                **{CONFUSION_KEY: val_eval.confusion.tolist()})
                save_train_state(Path(tmp), setup.optimizer, state, setup.scheduler,
                                 setup.model if setup.ema is not None else None)
            worker.report(metrics, Path(tmp) if rank == 0 else None)
        checkpoint_s = time.time() - t
        timings.checkpoint_time_s = (timings.checkpoint_time_s or 0.0) + checkpoint_s
        if late_ranks:  # every rank agrees: the flag went through the all-reduce
            break


def _latency(setup: TrialSetup, plan: TrialPlan, device: torch.device, batch: pa.Table
             ) -> float:
    """Per-sample inference latency of the trial's model on a real validation example."""
    inputs, _ = setup.task.collate(batch, plan, device)
    return latency_ms(setup.evaluated, setup.task, inputs, device)


def _shard_batches(worker: Worker, plan: TrialPlan, steps: int | None) -> EpochBatches:
    """This worker's training stream: its split of the dataset, reshuffled every pass."""
    shard = worker.dataset("train")

    def one_pass(number: int) -> Iterator[pa.Table]:
        return iter(shard.iter_batches(
            batch_size=plan.batch_size, batch_format="pyarrow",
            local_shuffle_buffer_size=SHUFFLE_BATCHES * plan.batch_size,
            local_shuffle_seed=plan.seed * 100_003 + number * 1_009 + worker.rank))

    return EpochBatches(one_pass, steps)


def planned_steps(settings: LoopSettings, plan: TrialPlan, world: int) -> int:
    """Optimizer steps per epoch on each rank (what the LR schedule is laid out over)."""
    if settings.steps_per_epoch:
        return settings.steps_per_epoch
    rows = int(settings.train_rows or 0) // max(world, 1)
    return max(1, rows // plan.batch_size + (rows % plan.batch_size > 1))


def _train_sample(worker: Worker, plan: TrialPlan) -> Iterator[pa.Table]:
    """A fixed sample of training examples (the first `TRAIN_SAMPLE` rows of the shuffled
    split) read like validation — the eval transform, no augmentation or mixing — so the
    board's train − validation gap measures overfitting, not the augmentation."""
    stream = worker.dataset("train").iter_batches(
        batch_size=max(plan.batch_size, 64), batch_format="pyarrow")
    taken = 0
    for i, batch in enumerate(stream):
        if taken >= TRAIN_SAMPLE:
            return
        batch = batch.slice(0, TRAIN_SAMPLE - taken)
        taken += batch.num_rows
        if i % worker.world == worker.rank:
            yield batch


def _val_batches(worker: Worker, plan: TrialPlan) -> Iterator[pa.Table]:
    """Every rank reads the whole validation set and evaluates every world-th batch, so the
    summed counts cover each example exactly once (splitting would drop rows to equalize)."""
    stream = worker.dataset("val").iter_batches(
        batch_size=max(plan.batch_size, 64), batch_format="pyarrow")
    return (b for i, b in enumerate(stream) if i % worker.world == worker.rank)
