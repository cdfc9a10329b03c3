"""Text tables (CSV / Parquet / JSONL with a text and a label column) → tokenized tensors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from automl.config import Config
from automl.data import stratified_split
from automl.errors import DataError
from automl.paths import local_path
from automl.plan import TrialPlan
from automl.tasks import TaskData


def read_table(path: str | Path, text_column: str, label_column: str) -> pd.DataFrame:
    """Read CSV/TSV/Parquet/JSONL; a missing column's DataError lists the columns that exist."""
    path = local_path(path, "data.path")
    if not path.is_file():
        raise DataError(
            f"data file {str(path)!r} does not exist; pass --data FILE or set data.path"
        )
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".bz2") else path.suffix
    try:
        if ".parquet" in suffix:
            frame = pd.read_parquet(path)
        elif ".jsonl" in suffix or ".json" in suffix:
            frame = pd.read_json(path, lines=".jsonl" in suffix)
        else:
            frame = pd.read_csv(path, sep="\t" if ".tsv" in suffix else ",", encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode "
                        f"it, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.csv") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path} as a {suffix} table: {exc}") from None
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{path} has no column(s) {missing}; it has {list(frame.columns)}. "
                        "Set data.text_column / data.label_column")
    return frame


def _clean(frame: pd.DataFrame, text_column: str, label_column: str) -> tuple[pd.DataFrame, int]:
    """Rows with a non-empty text and a label (labels as strings), and how many were dropped."""
    texts = frame[text_column].astype("string").str.strip()
    keep = texts.notna() & (texts != "") & frame[label_column].notna()
    out = pd.DataFrame({"text": texts[keep].astype(str),
                        "label": frame[label_column][keep].astype(str)})
    return out.reset_index(drop=True), int((~keep).sum())


def prepare_text(config: Config) -> tuple[dict[str, Any], list[str], str]:
    """(payload with train/val texts and labels, class names, summary line)."""
    d = config.data
    assert d.path is not None
    frame, skipped = _clean(read_table(d.path, d.text_column, d.label_column),
                            d.text_column, d.label_column)
    classes = sorted(frame["label"].unique())
    if len(classes) < 2:
        raise DataError(
            f"{d.path}: labels have a single value {classes}; need at least two classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = frame["label"].map(index).to_numpy()
    if d.val_path:
        val_frame, val_skipped = _clean(read_table(d.val_path, d.text_column, d.label_column),
                                        d.text_column, d.label_column)
        unknown = sorted(set(val_frame["label"]) - set(classes))
        if unknown:
            raise DataError(f"{d.val_path}: label value(s) {unknown[:5]} never occur in training "
                            f"data {d.path} (known: {classes[:10]})")
        skipped += val_skipped
        train_idx = np.arange(len(frame))
        if d.max_per_class:
            train_idx = stratified_split(labels, 0.5, d.seed, d.max_per_class * 2)[0]
        train_texts, train_labels = frame["text"].to_numpy()[train_idx], labels[train_idx]
        val_texts = val_frame["text"].to_numpy()
        val_labels = val_frame["label"].map(index).to_numpy()
    else:
        train_idx, val_idx = stratified_split(labels, d.val_fraction, d.seed, d.max_per_class)
        train_texts, train_labels = frame["text"].to_numpy()[train_idx], labels[train_idx]
        val_texts, val_labels = frame["text"].to_numpy()[val_idx], labels[val_idx]
    payload = {"train_texts": list(train_texts), "val_texts": list(val_texts),
               "train_labels": np.asarray(train_labels), "val_labels": np.asarray(val_labels)}
    note = f", {skipped} empty row(s) skipped" if skipped else ""
    summary = (f"Data: {d.path}: {len(classes)} classes, {len(train_labels)} train / "
               f"{len(val_labels)} val{note}")
    return payload, classes, summary


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length",
                    return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def make_text_task_data(plan: TrialPlan, payload: dict[str, Any]) -> TaskData:
    """Tokenize once per trial with the backbone's own tokenizer."""
    from automl.backbones.hf_backbone import load_tokenizer

    tokenizer = load_tokenizer(plan.preprocessing["source"])
    return TaskData(
        _tokenize(tokenizer, payload["train_texts"], plan.max_length),
        torch.as_tensor(payload["train_labels"], dtype=torch.long),
        _tokenize(tokenizer, payload["val_texts"], plan.max_length),
        torch.as_tensor(payload["val_labels"], dtype=torch.long),
        plan.preprocessing,
    )


def text_batches(
    inputs: list[str], export_dir: Path, batch_size: int, max_length: int
) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
    """(texts, tokenized batch) for prediction with an exported text model."""
    from automl.backbones.hf_backbone import HF_SUBDIR, load_tokenizer

    tokenizer = load_tokenizer(str(export_dir / HF_SUBDIR))
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        yield chunk, _tokenize(tokenizer, chunk, max_length)
