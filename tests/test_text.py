from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from automl.backbones.groups import apply_unfreeze, count_params
from automl.backbones.hf_backbone import check_text_backbone, load_tokenizer
from automl.config.parse import from_dict
from automl.config.schema import Config
from automl.data.batches import local_batches
from automl.data.shards import prepare_local
from automl.errors import BackboneError, DataError
from automl.export import ExportContext, export_checkpoint, predict
from automl.tasks import get_task
from automl.trial.checkpoints import save_checkpoint
from automl.trial.plan import TrialPlan
from automl.trial.steps import setup_trial, train_epoch
from tests.conftest import write_tiny_bert
from tests.helpers import CPU, build_model, fit

TASK = get_task("text")


def _config(data: Path, bert: Path, max_length: object = 16, **data_extra: object) -> Config:
    return from_dict({"task": "text", "backbones": [{"name": str(bert), "weights": f"file:{bert}"}],
                      "data": {"path": str(data), "val_fraction": 0.25, **data_extra},
                      "space": {"max_length": max_length}})


def _prepared(data: Path, bert: Path, **extra: object
              ) -> tuple[dict[str, pa.Table], list[str], dict[str, object]]:
    config = _config(data, bert, **extra)
    pre = TASK.preflight(config.backbones[0], config)
    catalog = TASK.scan(config.data)
    return prepare_local(TASK, catalog, config.data, pre), list(catalog.classes), pre


def _plan(bert: Path, classes: list[str], pre: dict | None = None, **changes: object
          ) -> TrialPlan:
    values: dict = {
        "task": "text", "backbone": str(bert), "weights": f"file:{bert}", "classes": tuple(classes),
        "preprocessing": pre or {"source": str(bert)}, "unfreeze_fraction": 1.0,
        "head_lr": 1e-2, "backbone_lr": 1e-3, "layer_decay": 0.8, "weight_decay": 0.0,
        "batch_size": 8, "epochs": 3, "seed": 0, "max_length": 16, "pooling": "mean",
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


def _scan(data: Path, bert: Path, **extra: object):  # type: ignore[no-untyped-def]
    return TASK.scan(_config(data, bert, **extra).data)


def test_table_errors(tmp_path: Path, text_csv: Path, tiny_bert: Path) -> None:
    expected = r"has no column\(s\) \['review'\]; it has \['text', 'label'\]"
    with pytest.raises(DataError, match=expected):
        _scan(text_csv, tiny_bert, text_column="review")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 good,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        _scan(latin, tiny_bert)
    with pytest.raises(DataError, match="does not exist"):
        _scan(tmp_path / "none.csv", tiny_bert)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": "neg"}\n')
    with pytest.raises(DataError, match=r"mixes label types \(1 and 'neg'\)"):
        _scan(mixed, tiny_bert)


def test_scan_skips_empty_rows_and_checks_labels(tmp_path: Path, tiny_bert: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood film,pos\n  ,pos\nbad film,neg\ngreat,pos\nawful,neg\n"
                    ",neg\n")
    catalog = _scan(data, tiny_bert)
    assert catalog.classes == ("neg", "pos") and catalog.dropped == 2 and len(catalog.labels) == 4
    one = tmp_path / "one.csv"
    one.write_text("text,label\ngood,pos\ngreat,pos\n")
    with pytest.raises(DataError, match="single value"):
        _scan(one, tiny_bert)
    val = tmp_path / "val.csv"
    val.write_text("text,label\ngood,pos\nmeh,neutral\n")
    with pytest.raises(DataError, match=r"label value\(s\) \['neutral'\] never occur"):
        _scan(data, tiny_bert, val_path=str(val))


def test_streamed_table_keeps_rows_and_labels_aligned(tmp_path: Path, tiny_bert: Path) -> None:
    """Rows read back in small batches (as preparation does) keep their own labels."""
    from automl.data import sources

    data = tmp_path / "big.csv"
    rows = [f"{'good' if i % 3 else 'bad'} film {i},{'pos' if i % 3 else 'neg'}"
            for i in range(250)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n,neg\n")
    config = _config(data, tiny_bert)
    catalog = TASK.scan(config.data)
    original = sources.BATCH_ROWS
    try:
        sources.BATCH_ROWS = 7
        frames = list(TASK.source_rows(catalog, config.data))
    finally:
        sources.BATCH_ROWS = original
    table = pa.concat_tables(pa.Table.from_pandas(f, preserve_index=False) for f in frames)
    names = [catalog.classes[i] for i in table.column("label").to_pylist()]
    assert table.num_rows == 250 and len(frames) == 36  # 251 rows in batches of 7
    texts = table.column("text").to_pylist()
    assert all(("good" in t) == (n == "pos") for t, n in zip(texts, names, strict=True))


@pytest.mark.parametrize("max_length", [8, 9, 16])
def test_workers_truncate_exactly_like_the_tokenizer(
    tmp_path: Path, tiny_bert: Path, max_length: int,
) -> None:
    from tests.conftest import write_text_csv

    text_csv = write_text_csv(tmp_path / "long.csv", words=12)
    tables, classes, pre = _prepared(text_csv, tiny_bert, max_length={"choices": [8, 9, 16]})
    assert pre["max_tokens"] == 16
    plan = _plan(tiny_bert, classes, pre, max_length=max_length)
    inputs, _ = TASK.collate(tables["val"], plan, CPU)
    import pandas as pd

    texts = pd.read_csv(text_csv)["text"]
    tokenizer = load_tokenizer(str(tiny_bert))
    expected = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    pairs = zip(inputs["input_ids"], inputs["attention_mask"], strict=True)
    got = [row[mask.bool()].tolist() for row, mask in pairs]
    assert all(g in expected for g in got)
    assert max(map(len, got)) == min(max_length, 14)  # 12 words + [CLS] + [SEP]


def test_text_trial_learns_and_is_reproducible(text_csv: Path, tiny_bert: Path) -> None:
    tables, classes, pre = _prepared(text_csv, tiny_bert)

    def run() -> float:
        plan = _plan(tiny_bert, classes, pre)
        return fit(setup_trial(plan), plan, tables, range(1, 4))[1]

    first = run()
    assert first == run()
    assert first >= 0.75, "keyword sentiment is learnable in 3 epochs"


def test_lp_ft_first_epoch_trains_only_the_head(text_csv: Path, tiny_bert: Path) -> None:
    tables, classes, pre = _prepared(text_csv, tiny_bert)
    plan = _plan(tiny_bert, classes, pre, lp_ft_epochs=1, pooling="cls")
    setup = setup_trial(plan)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    train_epoch(setup, plan, 1, CPU, local_batches(tables["train"], 8, seed=1))
    changed = {k for k, v in setup.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.weight", "head.bias"}
    train_epoch(setup, plan, 2, CPU, local_batches(tables["train"], 8, seed=2))
    changed = {k for k, v in setup.model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("encoder.") for k in changed)


def test_text_export_round_trip(text_csv: Path, tiny_bert: Path, tmp_path: Path) -> None:
    """Every format of a text model (mean pooling) matches PyTorch; the Hugging Face folder
    loads with transformers alone (automl blocked from import) and predicts the same."""
    tables, classes, pre = _prepared(text_csv, tiny_bert)
    plan = _plan(tiny_bert, classes, pre, epochs=1)
    setup = setup_trial(plan)
    fit(setup, plan, tables, range(1, 4))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_checkpoint(setup.model, plan, ckpt, val_accuracy=1.0, epoch=1)
    out = export_checkpoint(ckpt, tmp_path / "export",
                            context=ExportContext(tables["val"], data={"text_column": "text"}))
    assert (out / "hf" / "config.json").is_file() and (out / "hf" / "tokenizer.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    checks = {c["name"]: c for c in manifest["checks"]}
    assert set(checks) == {"safetensors", "torchscript", "onnx", "hf"}
    assert all(c["max_abs_diff"] < 1e-4 and c["top1_agreement"] == 1.0 for c in checks.values())
    texts = ["the film was great and superb", "the plot was awful and dull",
             "great " * 40]  # longer than max_length: truncated as in training
    preds = predict(out, texts)
    assert [p.label for p in preds[:2]] == ["pos", "neg"]
    assert np.all([0.5 <= p.probability <= 1.0 for p in preds])
    onnx = predict(out, texts, runtime="onnx")
    assert [p.label for p in onnx] == [p.label for p in preds]
    assert np.allclose([p.probability for p in onnx], [p.probability for p in preds], atol=1e-4)

    # A file slipped into the tokenizer folder is refused; so is a changed one.
    from automl.errors import AutomlError

    (out / "hf" / "added_tokens.json").write_text("{}")
    with pytest.raises(AutomlError, match=r"added_tokens.json is not part of the export"):
        predict(out, texts)
    (out / "hf" / "added_tokens.json").unlink()
    original = (out / "hf" / "tokenizer.json").read_text()
    (out / "hf" / "tokenizer.json").write_text(original.replace('"[UNK]"', '"[UNX]"'))
    with pytest.raises(AutomlError, match=r"tokenizer.json does not match"):
        predict(out, texts, runtime="onnx")
    (out / "hf" / "tokenizer.json").write_text(original)

    # A CSV of texts is read through the column the model was trained on.
    table = tmp_path / "new.csv"
    pd.DataFrame({"text": texts, "other": [1, 2, 3]}).to_csv(table, index=False)
    assert [p.label for p in predict(out, [str(table)])] == [p.label for p in preds]

    code = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "automl" or name.startswith("automl."):
            raise ImportError("automl is blocked in this test")
sys.meta_path.insert(0, Block())
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, texts = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
enc = tok(texts, truncation=True, padding=True, return_tensors="pt")
probs = model(**enc).logits.softmax(-1)
print(json.dumps([[model.config.id2label[int(i)], float(p)] for p, i in zip(*probs.max(-1))]))
print("loaded", type(model).__name__, type(tok).__name__)
"""
    done = subprocess.run([sys.executable, "-c", code, str(out / "huggingface"),
                           json.dumps(texts)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    *_, result, loaded = done.stdout.strip().splitlines()
    assert loaded == "loaded AutomlTextForSequenceClassification BertTokenizer", done.stdout
    hf = json.loads(result)
    assert [label for label, _ in hf] == [p.label for p in preds]
    assert np.allclose([p for _, p in hf], [p.probability for p in preds], atol=1e-5)


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


def test_tables_stream_in_bounded_batches(tmp_path: Path) -> None:
    from automl.data import sources

    data = tmp_path / "t.parquet"
    import pandas as pd

    pd.DataFrame({"text": [f"t{i}" for i in range(25)], "label": ["a", "b"] * 12 + ["a"]}
                 ).to_parquet(data)
    sizes = [len(f) for f in sources.iter_table(str(data), ["text", "label"], batch_rows=10)]
    assert sizes == [10, 10, 5]


def test_model_sources_are_resolved_on_each_node(tiny_bert: Path, tmp_path: Path) -> None:
    """The preprocessing a driver hands to workers names sources portably: another node
    finds its own install of a weights package, and a missing local path says where."""
    from automl.backbones.hf_backbone import locate, resolve_source
    from automl.errors import AutomlError

    name = "sentence-transformers/all-MiniLM-L6-v2"
    source = resolve_source(name, "package")
    assert source == f"package:{name}"  # not this machine's site-packages path
    assert Path(locate(source), "config.json").is_file()
    assert resolve_source("x", f"file:{tiny_bert}") == f"file:{tiny_bert}"
    assert locate(f"file:{tiny_bert}") == str(tiny_bert)
    with pytest.raises(AutomlError, match=r"not found on node .*file system every node mounts"):
        locate(f"file:{tmp_path / 'elsewhere'}")
