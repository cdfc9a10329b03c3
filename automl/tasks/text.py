"""Text classification: Hugging Face encoders over a text table (CSV/TSV/Parquet/JSONL).

Tables are streamed (never held whole) to find labels and split them; preparation tokenizes
each text once per tokenizer at the space's largest `max_length`, and workers cut every row
to the trial's own `max_length` exactly as the tokenizer would have truncated it.

transformers (and Optuna, for the space's largest `max_length`) are imported inside the
methods that need them: validating a config and reading a board consult the task without them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from automl.backbones.registry import check_hf_name
from automl.data import duplicates, sources
from automl.data.catalog import UNUSED, Catalog, class_codes, fingerprint
from automl.data.splits import split_sources
from automl.errors import DataError
from automl.tasks.base import to_device

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.backbones.groups import LayerGroups
    from automl.config.schema import BackboneChoice, Config, DataConfig
    from automl.trial.plan import TrialPlan


class TextClassification:
    """One label per text; transformers encoders with mean or CLS pooling."""

    name = "text"
    library = "transformers"
    plan_fields: tuple[str, ...] = ("pooling", "max_length")
    shuffled_source = False
    export_inputs: tuple[tuple[str, tuple[int, ...]], ...] = (
        ("input_ids", (0, 1)), ("attention_mask", (0, 1)))
    library_format: str | None = "hf"

    def check_backbone(self, name: str, weights: str) -> str | None:
        """A hub id or a local model directory."""
        return check_hf_name(name, weights)

    def scan(self, data: DataConfig) -> Catalog:
        """Stream the table(s) once for labels; split (or use data.val_path for validation);
        the test split held out of data.path (`data.test_fraction`) or data.test_path."""
        assert data.path is not None
        tables = tuple(t for t in (data.path, data.val_path, data.test_path) if t)
        read = [_labels_of(t, data, data.group_column if t == data.path else None)
                for t in tables]
        names = [r.names for r in read]
        keys = [r.keys for r in read]
        where = [f"{t} row {row + 1}" for t, r in zip(tables, read, strict=True) for row in r.rows]
        dropped = sum(r.dropped for r in read)
        groups = read[0].groups
        classes = sorted(set(names[0]))
        if len(classes) < 2:
            raise DataError(f"{data.path}: labels have a single value {classes}; need at "
                            "least two classes")
        labels = [class_codes(n, classes, t) for n, t in zip(names, tables, strict=True)]
        split, note = split_sources(labels, data, groups)
        split, repeated = duplicates.resolve(split, np.concatenate(keys), where,
                                             data.drop_duplicates)
        infos = {t: sources.file_info(t) for t in tables}
        stats = [(t, info.size, info.mtime_ns) for t, info in infos.items()]
        key = fingerprint(self.name, stats, data.text_column, data.label_column, split)
        return Catalog(data.path, tuple(classes), np.concatenate(labels), split, tables, key,
                       dropped, (note,) if note else (), repeated)

    def source_rows(self, catalog: Catalog, data: DataConfig) -> Iterator[pd.DataFrame]:
        """The usable rows again, in scan order, with their label and split."""
        text_column, label_column = data.text_column, data.label_column
        offset = 0
        for number, table in enumerate(catalog.locations):
            row = 0
            for frame in sources.iter_table(table, [text_column, label_column]):
                texts, _labels = _clean(frame, text_column, label_column, table)
                rows = np.flatnonzero(texts.notna().to_numpy())
                end = offset + len(rows)
                out = pd.DataFrame({"key": [f"{number}:{row + r}" for r in rows],
                                    "label": catalog.labels[offset:end],
                                    "split": catalog.split[offset:end],
                                    "text": texts.iloc[rows].to_numpy()})
                offset, row = end, row + len(frame)
                yield out[out["split"] != UNUSED]

    def preflight(self, choice: BackboneChoice, config: Config) -> dict[str, Any]:
        """Weights and tokenizer load and match; token layout for the workers' truncation."""
        from automl.backbones.hf_backbone import check_text_backbone, load_tokenizer
        from automl.config import spaces

        out = check_text_backbone(choice.name, choice.weights)
        tokenizer = load_tokenizer(out["source"])
        full = tokenizer("a")["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        prefix = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
        return {**out, "max_tokens": int(spaces.largest(config.space["max_length"])),
                "suffix_tokens": len(full) - prefix - len(plain),
                "pad_id": int(tokenizer.pad_token_id or 0)}

    def variant(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        """One tokenization per tokenizer and largest length."""
        return {k: preprocessing[k] for k in ("source", "max_tokens")}

    def prepare_batch(self, batch: pa.Table, variant: dict[str, Any]) -> pa.Table:
        """Token ids (with special tokens, no padding) of every text."""
        from automl.backbones.hf_backbone import load_tokenizer

        tokenizer = load_tokenizer(variant["source"])
        ids = tokenizer(batch.column("text").to_pylist(), truncation=True,
                        max_length=int(variant["max_tokens"]))["input_ids"]
        return pa.table({"key": batch.column("key"),
                         "label": batch.column("label").cast(pa.int32()),
                         "ids": pa.array(ids, pa.list_(pa.int32()))})

    def build_model(self, plan: TrialPlan, saved: Path | None = None
                    ) -> tuple[nn.Module, LayerGroups]:
        """Encoder + pooling + head; from an export's saved HF directory when `saved`."""
        from automl.backbones.hf_backbone import HF_SUBDIR, create_text_model

        source = str(saved / HF_SUBDIR) if saved is not None else plan.preprocessing["source"]
        model = create_text_model(plan.backbone, "scratch" if saved else plan.weights,
                                  plan.num_classes, pooling=plan.pooling, source=source,
                                  dropout=plan.dropout)
        return model, model.layer_groups()

    def flips(self, plan: TrialPlan) -> bool:
        return False

    def collate(self, batch: pa.Table, plan: TrialPlan, device: torch.device,
                augment: int | None = None
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """`host_batch`, then onto `device`."""
        host, labels = self.host_batch(batch, plan, augment)
        return self.to_inputs(host, plan, device, augment), to_device(labels, device)

    def to_inputs(self, host: dict[str, torch.Tensor], plan: TrialPlan, device: torch.device,
                  augment: int | None = None) -> dict[str, torch.Tensor]:
        """Token tensors onto `device` (text has no augmentation)."""
        return {k: to_device(v, device) for k, v in host.items()}

    def host_batch(self, batch: pa.Table, plan: TrialPlan, augment: int | None = None
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Cut each row to the trial's max_length (keeping the closing special tokens), pad
        to the longest row of the batch."""
        import torch

        column = batch.column("ids")
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets, values = array.offsets.to_numpy(), array.values.to_numpy()
        keep, suffix = plan.max_length, int(plan.preprocessing["suffix_tokens"])
        rows = []
        for start, end in itertools.pairwise(offsets):
            ids = values[start:end]
            if len(ids) > keep:
                ids = np.concatenate([ids[:keep - suffix], ids[len(ids) - suffix:]])
            rows.append(ids)
        width = max(1, max(len(r) for r in rows))
        input_ids = np.full((len(rows), width), plan.preprocessing["pad_id"], dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, ids in enumerate(rows):
            input_ids[i, :len(ids)] = ids
            mask[i, :len(ids)] = 1
        labels = torch.from_numpy(batch.column("label").to_numpy().astype(np.int64))
        return ({"input_ids": torch.from_numpy(input_ids),
                 "attention_mask": torch.from_numpy(mask)}, labels)

    def forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Text models take keyword tensors."""
        return model(**inputs)

    def predict_batches(self, inputs: list[str], export_dir: Path, plan: TrialPlan,
                        batch_size: int) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
        """Tokenize with the exported tokenizer at the trained max_length."""
        from automl.backbones.hf_backbone import HF_SUBDIR, load_tokenizer

        tokenizer = load_tokenizer(str(export_dir / HF_SUBDIR))
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            enc = tokenizer(chunk, truncation=True, max_length=plan.max_length, padding=True,
                            return_tensors="pt")
            yield chunk, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def example_input(self, plan: TrialPlan) -> dict[str, torch.Tensor]:
        """One 8-token text."""
        import torch

        return {"input_ids": torch.ones(1, 8, dtype=torch.long),
                "attention_mask": torch.ones(1, 8, dtype=torch.long)}

    def save_extras(self, model: nn.Module, directory: Path, plan: TrialPlan) -> None:
        """The encoder config and tokenizer, so the checkpoint rebuilds offline."""
        save_hf = getattr(model, "save_hf")  # noqa: B009 - TextClassifier's method
        save_hf(directory, plan.preprocessing["source"])

    def save_library_format(self, model: nn.Module, directory: Path, plan: TrialPlan,
                            extras: Path) -> None:
        """A Hugging Face folder: `AutoModelForSequenceClassification` + `AutoTokenizer`."""
        from automl.backbones.hf_backbone import HF_SUBDIR
        from automl.backbones.hf_export import save_sequence_classifier

        save_sequence_classifier(model, directory, plan, extras / HF_SUBDIR)

    def run_library_format(self, directory: Path, inputs: dict[str, torch.Tensor]
                           ) -> torch.Tensor:
        """Logits of the Hugging Face folder loaded by transformers' Auto classes."""
        from automl.backbones.hf_export import load_sequence_classifier

        return load_sequence_classifier(directory)(**inputs).logits

    def read_inputs(self, inputs: list[str], settings: dict[str, Any]) -> list[str]:
        """Each input is a text, or a table file (CSV/TSV/Parquet/JSONL) whose text column
        (the one the model was trained on, else `text`) is read row by row."""
        column = settings.get("text_column") or "text"
        texts: list[str] = []
        for item in inputs:
            if sources.is_table(item) and Path(item).is_file():
                for frame in sources.iter_table(item, [column]):
                    texts += frame[column].astype("string").fillna("").tolist()
            elif sources.is_table(item) and not any(c.isspace() for c in item):
                raise DataError(f"input {item!r}: no such file (a table of texts to "
                                "classify); check the path, or pass the texts themselves")
            else:
                texts.append(item)
        return texts


@dataclass(frozen=True)
class _TableLabels:
    """The usable rows of one table, as the scan needs them."""

    names: np.ndarray
    """Label strings."""
    dropped: int
    keys: np.ndarray
    """Content keys (`automl.data.duplicates`)."""
    rows: list[int]
    """Row numbers in the table (0-based)."""
    groups: list[object] | None


def _labels_of(table: str, data: DataConfig, group_column: str | None = None) -> _TableLabels:
    """Stream one table's label (and group) column and hash its texts."""
    names: list[np.ndarray] = [np.array([], object)]
    keys: list[np.ndarray] = [np.array([], object)]
    rows: list[int] = []
    groups: list[object] = []
    dropped = seen = 0
    reader = sources.LabelReader(table, data.label_column)
    columns = [data.text_column, data.label_column, *([group_column] if group_column else [])]
    for frame in sources.iter_table(table, columns):
        texts, labels = _clean(frame, data.text_column, data.label_column, table, reader)
        keep = texts.notna().to_numpy()
        names.append(labels[keep].to_numpy(dtype=object))
        keys.append(duplicates.text_keys(texts[keep]))
        rows += (seen + np.flatnonzero(keep)).tolist()
        if group_column:
            groups += [None if pd.isna(g) else g for g in frame[group_column][keep]]
        dropped += int((~keep).sum())
        seen += len(frame)
    return _TableLabels(np.concatenate(names), dropped, np.concatenate(keys), rows,
                        groups if group_column else None)


def _clean(frame: pd.DataFrame, text_column: str, label_column: str, table: str,
           reader: sources.LabelReader | None = None) -> tuple[pd.Series, pd.Series]:
    """(stripped texts, label strings); a row without text or label gets a missing text."""
    reader = reader or sources.LabelReader(table, label_column)
    texts = frame[text_column].astype("string").str.strip()
    labels = reader.strings(frame[label_column])
    texts = texts.where(texts.notna() & (texts != "") & labels.notna())
    return texts, labels
