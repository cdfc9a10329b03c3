from __future__ import annotations

from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from automl.config import parse as config
from automl.errors import ConfigError

SPACES = sorted(Path(__file__).resolve().parents[1].joinpath("search_spaces").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_shipped_space_is_valid(path: Path) -> None:
    cfg = config.load(path)
    assert cfg.backbones and (cfg.search.max_trials or cfg.search.budget_s)


def test_demo_space_maps_to_optuna_distributions() -> None:
    cfg = config.load(Path(__file__).resolve().parents[1] / "search_spaces/demo_vision.yaml")
    assert isinstance(cfg.space["head_lr"], FloatDistribution) and cfg.space["head_lr"].log
    assert isinstance(cfg.space["unfreeze_fraction"], CategoricalDistribution)
    assert {b.label for b in cfg.backbones} >= {"tf_efficientnet_lite0:scratch"}


def test_all_problems_reported_at_once_with_key_paths(tmp_path: Path) -> None:
    path = _write(tmp_path, """
task: image
backbones: [{name: resnet18, weights: scratch}, {name: tf_efficientnet_lite9, weights: scratch}]
space:
  head_lr: {low: 0.1, high: 0.001, log: true}
  backbone_lr: -0.1
  lernrate: 3
train: {epochs: 0, epoch: 3}
resources: {workers_per_trial: two}
""")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    text = str(info.value)
    assert "found 8 problem(s)" in text, text
    assert "space.head_lr:" in text and "low" in text
    assert "space.backbone_lr: value must be > 0, got -0.1" in text
    assert "space.lernrate: unknown parameter" in text
    assert "train.epochs: must be >= 1, got 0" in text
    assert "train.epoch: unknown key; did you mean 'epochs'?" in text
    assert "backbones[1]: unknown timm backbone 'tf_efficientnet_lite9'; did you mean" in text
    assert "did you mean tf_efficientnet_lite" in text
    assert "resources.workers_per_trial: expected int, got 'two'" in text


def test_malformed_yaml_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(_write(tmp_path, "task: image\nspace: {head_lr: [1, 2\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.yaml")


def test_packaged_weights_for_unpackaged_model(tmp_path: Path) -> None:
    path = _write(tmp_path, "backbones: [{name: resnet18, weights: package}]\n")
    with pytest.raises(ConfigError, match="no packaged weights for 'resnet18'"):
        config.load(path)


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = _write(tmp_path, "backbones: [test_resnet]\nsearch: {num_samples: 4}\n")
    cfg = config.load(path, {"search.num_samples": 2, "data.path": "x"})
    assert cfg.search.num_samples == 2 and cfg.data.path == str(Path("x").resolve())
    assert cfg.backbones[0].weights == "hub"


def test_impossible_grace_period(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "backbones: [test_resnet]\ntrain: {epochs: 2}\nsearch: {grace_period: 3}\n"
    )
    with pytest.raises(ConfigError, match=r"search.grace_period: must be between 1 and"):
        config.load(path)


def test_yaml_exponent_floats_and_task_specific_params(tmp_path: Path) -> None:
    path = _write(tmp_path, "backbones: [test_resnet]\nspace: {head_lr: 1e-3, pooling: cls}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "space.pooling: only applies to task text, this is image" in str(info.value)
    assert "head_lr" not in str(info.value)  # 1e-3 read as a float, not the string '1e-3'
    ok = _write(tmp_path, "backbones: [test_resnet]\nspace: {head_lr: {low: 1e-4, high: 1e-2}}\n")
    assert config.load(ok).space["head_lr"].low == 1e-4


def test_wrong_types_in_optional_fields_are_reported_not_crashed(tmp_path: Path) -> None:
    path = _write(tmp_path, "backbones: [test_resnet]\ndata: {image_size: big}\n"
                            "resources: {use_gpu: 1, cpus_per_worker: 2}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    text = str(info.value)
    assert "data.image_size: expected int, got 'big'" in text
    assert "resources.use_gpu: expected bool, got 1" in text
    assert "cpus_per_worker" not in text


@pytest.mark.parametrize("data", ["data:\n", "data: images\n", "data: [a]\n"])
def test_data_section_empty_or_not_a_mapping_with_data_override(tmp_path: Path, data: str) -> None:
    path = _write(tmp_path, "backbones: [test_resnet]\n" + data)
    if data == "data:\n":
        assert config.load(path, {"data.path": "imgs"}).data.path.endswith("imgs")
        return
    with pytest.raises(ConfigError, match="data: must be a mapping"):
        config.load(path, {"data.path": "imgs"})


def test_negative_grad_clip_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "backbones: [test_resnet]\ntrain: {grad_clip: -1.0}\n")
    with pytest.raises(ConfigError, match=r"train.grad_clip: must be > 0 .*got -1.0"):
        config.load(path)
    ok = _write(tmp_path, "backbones: [test_resnet]\ntrain: {grad_clip: null}\n")
    assert config.load(ok).train.grad_clip is None


def test_unknown_sampler_and_scheduler_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, """
task: image
backbones: [{name: test_resnet, weights: scratch}]
search: {sampler: grid, scheduler: hyperband}
""")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "search.sampler: must be one of ['tpe', 'random']" in str(info.value)
    assert "search.scheduler: must be one of ['asha', 'fifo']" in str(info.value)
