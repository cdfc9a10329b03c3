"""The fine-tuning recipe: LR schedule, label smoothing, mixup/cutmix, EMA, augmentation, and
the encoded images it reads."""

from __future__ import annotations

import copy
import io
import random
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from automl.config import parse
from automl.config.spaces import parse_param, recipe_before, sample_trial
from automl.errors import ConfigError
from automl.tasks.image_codec import (
    decode_batch,
    encode_for_storage,
    eval_pixels,
    train_transform,
)
from automl.tasks.image_files import load_image
from automl.trial import recipe
from automl.trial.plan import TrialPlan
from automl.trial.steps import setup_trial
from tests.helpers import PRE, tiny_plan

VARIANT = {"image_size": 24, "interpolation": "bilinear", "crop_pct": 0.875}


def test_lr_factor_at_known_steps() -> None:
    # 100 steps, 10 of warm-up: 1/11 .. 10/11, then cosine from 1 to the floor.
    f = [recipe.lr_factor(s, 100, 0.1, "cosine", 0.1) for s in range(100)]
    assert f[0] == pytest.approx(1 / 11) and f[9] == pytest.approx(10 / 11)
    assert f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert f[99] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 89 / 90)))
    assert recipe.lr_factor(150, 100, 0.1, "cosine", 0.1) == pytest.approx(0.1)  # past the end
    assert recipe.lr_factor(55, 100, 0.1, "linear", 0.0) == pytest.approx(0.5)
    assert recipe.lr_factor(55, 100, 0.1, "constant", 0.0) == 1.0
    assert recipe.lr_factor(0, 100, 0.0, "cosine", 0.0) == 1.0  # no warm-up: full LR at once


def test_scheduler_scales_every_group_and_spans_the_planned_epochs() -> None:
    plan = tiny_plan(["a", "b"], lr_schedule="linear", warmup=0.0, min_lr_ratio=0.0,
                     head_lr=1e-2, backbone_lr=1e-3, epochs=1, schedule_epochs=2)
    setup = setup_trial(plan, steps_per_epoch=5)  # 10 planned steps, though 1 epoch runs
    for _ in range(5):
        setup.optimizer.step()
        setup.scheduler.step()
    lrs = {g["name"]: g["lr"] / g["initial_lr"] for g in setup.optimizer.param_groups}
    assert all(v == pytest.approx(0.5) for v in lrs.values())


def test_trial_models_are_channels_last_and_save_standard_weights(tmp_path: Path) -> None:
    """The trial's layout (timm's --channels-last) is the trial's own: the weights it saves
    are ordinary contiguous tensors, and its logits are the standard layout's."""
    from automl.trial.checkpoints import save_checkpoint

    plan = tiny_plan(["a", "b"])
    setup = setup_trial(plan)
    convs = [p for p in setup.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    x = torch.randn(2, 3, 24, 24)
    standard = copy.deepcopy(setup.model).to(memory_format=torch.contiguous_format).eval()
    assert torch.allclose(setup.model.eval()(x), standard(x), atol=1e-5)
    save_checkpoint(setup.model, plan, tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert all(t.is_contiguous() for t in saved.values())


def test_label_smoothing_and_soft_targets() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    plan = tiny_plan(["a", "b", "c"], label_smoothing=0.3)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.3)
    assert recipe.loss_fn(logits, torch.tensor([0]), plan) == pytest.approx(float(expected))
    soft = torch.tensor([[0.8, 0.1, 0.1]])
    by_hand = -(soft * logits.log_softmax(-1)).sum()
    assert recipe.loss_fn(logits, soft, plan) == pytest.approx(float(by_hand))


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_and_cutmix_targets_sum_to_one(mixup: float, cutmix: float) -> None:
    plan = tiny_plan(["a", "b", "c"], mixup=mixup, cutmix=cutmix, label_smoothing=0.1)
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 8, 8).clone()
    labels = torch.tensor([0, 1, 2, 0, 2, 1])  # each row's mirror has another label
    mixed, targets = recipe.mix(recipe.make_mixup(plan), x.clone(), labels, seed=3)
    assert targets.shape == (6, 3) and torch.allclose(targets.sum(1), torch.ones(6))
    # Row i is row i blended with row 5 - i (timm mixes a batch with its mirror), one weight
    # for the batch: a box of the other row (cutmix) or the convex combination (mixup).
    lam = float(targets[0, 0] - 0.1 / 3) / (1 - 0.1)  # the weight of row 0's own label
    for i in range(6):
        own, other = float(i), float(5 - i)
        if set(mixed[i].unique().tolist()) <= {own, other} and cutmix:
            share = float((mixed[i] == own).float().mean())
            assert share == pytest.approx(lam, abs=1e-6)  # the box's area is the weight
        else:
            assert torch.allclose(mixed[i], torch.full_like(mixed[i],
                                                            lam * own + (1 - lam) * other))
    again, _ = recipe.mix(recipe.make_mixup(plan), x.clone(), labels, seed=3)
    assert torch.equal(mixed, again)  # seeded: a restart mixes the same way
    odd, odd_targets = recipe.mix(recipe.make_mixup(plan), x[:5].clone(), labels[:5], seed=3)
    assert len(odd) == len(odd_targets) == 4


def test_ema_equals_a_hand_computed_average_after_two_steps() -> None:
    plan = tiny_plan(["a", "b"], ema_decay=0.5, lr_schedule="constant")
    setup = setup_trial(plan)
    first = {k: v.clone() for k, v in setup.model.state_dict().items()}
    snapshots = []
    for _ in range(2):
        for p in setup.model.parameters():
            p.data.add_(1.0)  # a known step
        setup.scheduler.step()
        setup.ema.update(setup.model, step=setup.scheduler.last_epoch)
        snapshots.append({k: v.clone() for k, v in setup.model.state_dict().items()})
    # timm's warm-up decay 1 - (1 + t)^-2/3 (capped at 0.5) at t = 0 and 1 after the first
    decays = [setup.ema.get_decay(1), setup.ema.get_decay(2)]
    assert decays[0] == 0.0
    name = next(n for n, _ in setup.model.named_parameters())
    expected = first[name]
    for decay, snap in zip(decays, snapshots, strict=True):
        expected = decay * expected + (1 - decay) * snap[name]
    assert torch.allclose(setup.ema.module.state_dict()[name], expected)
    assert setup.evaluated is setup.ema.module


def _png(array: np.ndarray, format: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=format, **options)
    return out.getvalue()


def _photo(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1)
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(20, 16), (200, 120), (120, 200), (37, 500)])
def test_encoded_png_gives_the_eval_pixels_of_the_source(shape: tuple[int, int],
                                                         tmp_path: Path) -> None:
    data = _png(_photo(*shape))
    source = tmp_path / "x.png"
    source.write_bytes(data)
    stored = encode_for_storage(data, VARIANT)
    if shape == (20, 16):
        assert stored == data  # already small: the source bytes as they are
    elif shape != (37, 500):
        with Image.open(io.BytesIO(stored)) as img:
            assert img.format == "PNG" and min(img.size) == int(24 / 0.875)  # full frame
    pre = {**VARIANT, "mean": [0.5] * 3, "std": [0.5] * 3}
    today = load_image(source, 24, "bilinear", 0.875)
    assert np.array_equal(eval_pixels(stored, pre), today)  # lossless: the very same pixels


def test_jpeg_sources_are_reencoded_as_high_quality_jpeg(tmp_path: Path) -> None:
    data = _png(_photo(300, 240), "JPEG", quality=90)
    stored = encode_for_storage(data, VARIANT)
    with Image.open(io.BytesIO(stored)) as img:
        assert img.format == "JPEG" and img.size == (34, 27)
    (tmp_path / "x.jpg").write_bytes(data)
    today = load_image(tmp_path / "x.jpg", 24, "bilinear", 0.875).astype(int)
    pre = {**VARIANT, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert np.abs(eval_pixels(stored, pre).astype(int) - today).mean() < 3


def test_an_extreme_strip_is_stored_small() -> None:
    stored = encode_for_storage(_png(np.zeros((2, 4000, 3), np.uint8)), VARIANT)
    with Image.open(io.BytesIO(stored)) as img:
        assert max(img.size) <= 3 * min(img.size)


def test_ddp_ranks_draw_their_own_augmentation_at_the_same_step() -> None:
    from automl.trial.steps import stream_seed

    assert stream_seed(3, 2, 5) == stream_seed(3, 2, 5, rank=0)  # one worker: as before
    seeds = {stream_seed(3, 2, 5, rank) + row for rank in range(4) for row in range(512)}
    assert len(seeds) == 4 * 512  # no example of one rank shares a seed with another's


def test_seeded_augmentation_reproduces_and_leaves_global_generators_alone() -> None:
    images = [_png(_photo(40, 32)) for _ in range(4)]
    plan = TrialPlan(task="image", backbone="x", weights="scratch", classes=("a", "b"),
                     preprocessing={**PRE, "image_size": 24}, unfreeze_fraction=1.0,
                     head_lr=1e-3, backbone_lr=1e-4, layer_decay=1.0, weight_decay=0.0,
                     batch_size=4, epochs=1, seed=0, augment="randaugment", crop_scale=0.3,
                     hflip=True)
    random.seed(5)
    torch.manual_seed(5)
    before = random.random(), float(torch.rand(1))
    random.seed(5)
    torch.manual_seed(5)
    first = decode_batch(images, plan, seed=11)
    assert (random.random(), float(torch.rand(1))) == before  # untouched by the transforms
    assert torch.equal(first, decode_batch(images, plan, seed=11))
    assert not torch.equal(first, decode_batch(images, plan, seed=12))
    assert first.shape == (4, 3, 24, 24) and first.dtype == torch.uint8
    evaluated = decode_batch(images, plan, seed=None)  # validation: the eval transform
    assert torch.equal(evaluated[0], torch.from_numpy(eval_pixels(images[0], plan.preprocessing))
                       .permute(2, 0, 1))


def test_the_train_transform_is_timms_with_the_plans_settings() -> None:
    steps = train_transform("randaugment", 24, "bilinear", (0.5,) * 3, 0.3, False, 7).transforms
    names = [type(t).__name__ for t in steps]
    assert names[0] == "RandomResizedCropAndInterpolation" and steps[0].scale == (0.3, 1.0)
    assert "RandomHorizontalFlip" not in names  # hflip off: never mirrored
    augment = next(t for t in steps if type(t).__name__ == "RandAugment")
    assert augment.num_layers == 2 and augment.ops[0].magnitude == 7
    trivial = train_transform("trivialaugment", 24, "bilinear", (0.5,) * 3, 0.7, True, 9)
    names = [type(t).__name__ for t in trivial.transforms]
    ops = next(t for t in trivial.transforms if type(t).__name__ == "RandAugment")
    assert "RandomHorizontalFlip" in names and ops.num_layers == 1 and ops.ops[0].prob == 1.0
    assert ops.ops[0].magnitude_std == float("inf")  # magnitude drawn uniformly per image


def test_random_erasing_zeroes_one_box_of_the_normalized_batch() -> None:
    from automl.tasks.image_codec import augment_on_device

    plan = tiny_plan(["a", "b"], augment="trivialaugment", random_erasing=1.0)
    x = torch.ones(3, 3, 16, 16)
    erased = augment_on_device(x.clone(), plan, seed=1)
    for image in erased:
        zero = (image == 0).all(0)
        rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
        assert zero.any() and zero.sum() == len(rows) * len(cols)  # one rectangle
        assert (image[:, ~zero] == 1).all()  # the rest untouched
    assert torch.equal(erased, augment_on_device(x.clone(), plan, seed=1))


def test_augmentation_is_not_sampled_where_it_cannot_act() -> None:
    space = {"unfreeze_fraction": parse_param("unfreeze_fraction", {"choices": [0.0]}),
             "augment": parse_param("augment", {"choices": ["randaugment"]}),
             "randaugment_magnitude": parse_param("randaugment_magnitude", {"low": 1,
                                                                            "high": 9}),
             "ema_decay": 0.9, "drop_path_rate": 0.1, "label_smoothing": 0.1}
    study = optuna.create_study()
    probe = sample_trial(study.ask(), ["b"], space, feature_cache=True)
    assert set(probe) == {"backbone", "unfreeze_fraction", "label_smoothing"}
    streamed = sample_trial(study.ask(), ["b"], space, feature_cache=False)
    assert {"augment", "randaugment_magnitude", "ema_decay"} <= set(streamed)
    assert "drop_path_rate" not in streamed  # backbone frozen either way
    none = {**space, "augment": "none"}
    assert "randaugment_magnitude" not in sample_trial(study.ask(), ["b"], none)


def test_older_plans_and_spaces_keep_the_recipe_they_trained_with() -> None:
    old = tiny_plan(["a", "b"])  # a plan.json from before the recipe: no recipe keys
    assert (old.lr_schedule, old.warmup, old.label_smoothing, old.augmentation) == (
        "constant", 0.0, 0.0, "flip")
    assert tiny_plan(["a", "b"], hflip=False).augmentation == "none"
    legacy = recipe_before("image", hflip=True)
    assert legacy["lr_schedule"] == "constant" and legacy["augment"] == "flip"
    assert "augment" not in recipe_before("text", hflip=False)


def test_flip_augmentation_needs_hflip() -> None:
    raw = {"task": "image", "backbones": [{"name": "resnet18", "weights": "scratch"}],
           "space": {"augment": {"choices": ["none", "flip"]}}}
    with pytest.raises(ConfigError, match=r"train\.hflip is false"):
        parse.from_dict(raw)
    cfg = parse.from_dict({**raw, "train": {"hflip": True}})
    assert cfg.space["lr_schedule"] == "cosine" and cfg.space["label_smoothing"] == 0.1


def test_decoding_in_worker_processes_gives_the_inline_stream(image_folder: Path) -> None:
    from automl.trial.decode import Decoder
    from tests.helpers import tiny_tables

    tables, classes = tiny_tables(image_folder)
    plan = tiny_plan(classes, augment="trivialaugment", hflip=True)
    items = [(tables["train"].slice(i, 6), 100 + i) for i in range(0, 24, 6)]
    items.append((tables["val"].slice(0, 6), None))  # an evaluation batch: no seed
    inline = list(Decoder(0).batches(plan, items))
    pool = Decoder(2)
    try:
        parallel = list(pool.batches(plan, items))
    finally:
        pool.close()
    assert len(parallel) == len(inline) == 5
    for (a, la, sa), (b, lb, sb) in zip(inline, parallel, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb) and sa == sb
