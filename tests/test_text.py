from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from automl.backbones import apply_unfreeze, build_model, count_params
from automl.backbones.hf_backbone import check_text_backbone
from automl.config import from_dict
from automl.errors import BackboneError, DataError
from automl.export import export_checkpoint, predict
from automl.plan import TrialPlan
from automl.text_data import prepare_text, read_table
from automl.train import evaluate, save_checkpoint, setup_trial, train_epoch
from tests.conftest import write_tiny_bert

CPU = torch.device("cpu")


def _config(data: Path, bert: Path, **data_extra: object) -> object:
    return from_dict({"task": "text", "backbones": [{"name": str(bert), "weights": f"file:{bert}"}],
                      "data": {"path": str(data), "val_fraction": 0.25, **data_extra}})


def _plan(bert: Path, classes: list[str], **changes: object) -> TrialPlan:
    values: dict = {
        "task": "text", "backbone": str(bert), "weights": f"file:{bert}", "classes": tuple(classes),
        "preprocessing": {"source": str(bert)}, "unfreeze_fraction": 1.0, "head_lr": 1e-2,
        "backbone_lr": 1e-3, "layer_decay": 0.8, "weight_decay": 0.0, "batch_size": 8,
        "epochs": 3, "seed": 0, "max_length": 16, "pooling": "mean",
    }
    values.update(changes)
    return TrialPlan(**values)


def test_layer_groups_embeddings_then_layers(tiny_bert: Path) -> None:
    model, layers = build_model("text", str(tiny_bert), f"file:{tiny_bert}", 2)
    assert len(layers.groups) == 3
    assert all(n.startswith("encoder.embeddings.") for n in layers.groups[0])
    assert all(".layer.1." in n for n in layers.groups[2])
    assert layers.head == ["head.bias", "head.weight"] or set(layers.head) == {"head.weight",
                                                                              "head.bias"}
    assert model.encoder.pooler is None
    counts = []
    for depth in range(4):
        model, layers = build_model("text", str(tiny_bert), f"file:{tiny_bert}", 2)
        apply_unfreeze(model, layers, depth)
        counts.append(count_params(model)[0])
    assert counts == sorted(counts) and counts[0] == 32 * 2 + 2
    assert counts[-1] == count_params(model)[1]


def test_pretrained_file_vs_scratch(tiny_bert: Path) -> None:
    from transformers import BertModel

    saved = BertModel.from_pretrained(tiny_bert)
    loaded, _ = build_model("text", str(tiny_bert), f"file:{tiny_bert}", 2)
    scratch, _ = build_model("text", str(tiny_bert), "scratch", 2)
    ref = saved.embeddings.word_embeddings.weight
    assert torch.equal(loaded.encoder.embeddings.word_embeddings.weight, ref)
    assert not torch.equal(scratch.encoder.embeddings.word_embeddings.weight, ref)


def test_tokenizer_model_mismatch(tmp_path: Path) -> None:
    bad = write_tiny_bert(tmp_path / "bad", vocab_size_extra=5)
    with pytest.raises(BackboneError, match="do not match"):
        check_text_backbone(str(bad), f"file:{bad}")


def test_read_table_errors(tmp_path: Path, text_csv: Path) -> None:
    expected = r"has no column\(s\) \['review'\]; it has \['text', 'label'\]"
    with pytest.raises(DataError, match=expected):
        read_table(text_csv, "review", "label")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 good,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(latin, "text", "label")
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "none.csv", "text", "label")


def test_prepare_text_skips_empty_and_checks_labels(tmp_path: Path, tiny_bert: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood film,pos\n  ,pos\nbad film,neg\ngreat,pos\nawful,neg\n,neg\n")
    _, classes, summary = prepare_text(_config(data, tiny_bert))
    assert classes == ["neg", "pos"] and "2 empty row(s) skipped" in summary
    one = tmp_path / "one.csv"
    one.write_text("text,label\ngood,pos\ngreat,pos\n")
    with pytest.raises(DataError, match="single value"):
        prepare_text(_config(one, tiny_bert))
    val = tmp_path / "val.csv"
    val.write_text("text,label\ngood,pos\nmeh,neutral\n")
    with pytest.raises(DataError, match=r"label value\(s\) \['neutral'\] never occur"):
        prepare_text(_config(data, tiny_bert, val_path=str(val)))


def test_text_trial_learns_and_is_reproducible(text_csv: Path, tiny_bert: Path) -> None:
    payload, classes, _ = prepare_text(_config(text_csv, tiny_bert))

    def run() -> float:
        plan = _plan(tiny_bert, classes)
        setup = setup_trial(plan, payload)
        for epoch in range(1, 4):
            train_epoch(setup, plan, epoch, CPU)
        correct, count, _ = evaluate(setup, plan, CPU)
        return correct / count

    first = run()
    assert first == run()
    assert first >= 0.75, "keyword sentiment is learnable in 3 epochs"


def test_lp_ft_first_epoch_trains_only_the_head(text_csv: Path, tiny_bert: Path) -> None:
    payload, classes, _ = prepare_text(_config(text_csv, tiny_bert))
    plan = _plan(tiny_bert, classes, lp_ft_epochs=1, pooling="cls")
    setup = setup_trial(plan, payload)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    train_epoch(setup, plan, 1, CPU)
    changed = {k for k, v in setup.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.weight", "head.bias"}
    train_epoch(setup, plan, 2, CPU)
    changed = {k for k, v in setup.model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("encoder.") for k in changed)


def test_text_export_round_trip(text_csv: Path, tiny_bert: Path, tmp_path: Path) -> None:
    payload, classes, _ = prepare_text(_config(text_csv, tiny_bert))
    plan = _plan(tiny_bert, classes, epochs=1)
    setup = setup_trial(plan, payload)
    for epoch in range(1, 4):
        train_epoch(setup, plan, epoch, CPU)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_checkpoint(setup.model, plan, ckpt, val_accuracy=1.0, epoch=1)
    out = export_checkpoint(ckpt, tmp_path / "export")
    assert (out / "hf" / "config.json").is_file() and (out / "hf" / "tokenizer.json").is_file()
    preds = predict(out, ["the film was great and superb", "the plot was awful and dull"])
    assert [p.label for p in preds] == ["pos", "neg"]
    assert np.all([0.5 <= p.probability <= 1.0 for p in preds])


def test_text_hub_offline_fails_fast_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from automl.backbones.hf_backbone import resolve_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match=r"hub is unreachable.*weights: package"):
        resolve_source("sentence-transformers/all-MiniLM-L6-v2", "hub")
    with pytest.raises(BackboneError, match="hub is unreachable"):
        resolve_source("bert-base-uncased", "scratch")


def test_packaged_minilm_has_seven_layer_groups() -> None:
    model, layers = build_model("text", "sentence-transformers/all-MiniLM-L6-v2", "package", 2)
    assert len(layers.groups) == 7  # embeddings + 6 encoder layers
    assert count_params(model)[1] > 22_000_000
