"""The report's per-class section: the selected trial's confusion matrices on validation (kept
beside its checkpoint) and on the test split (its `test` event), with per-class recall and
precision, so a class the model gives up on is visible even when accuracy looks fine."""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

from automl import storage
from automl.runs.history import TrialRecord
from automl.runs.selection import selected
from automl.trial.metrics import CONFUSION_KEY
from automl.trial.plan import PLAN_FILE

MATRIX_MAX_CLASSES = 30
"""Above this, only the per-class table (worst recall first) is shown."""
TABLE_MAX_ROWS = 20


def section(board: pd.DataFrame, records: list[TrialRecord]) -> list[str]:
    """`<h2>` + tables for the selected trial; nothing when there is none (or a run from
    before trials kept their confusion matrices)."""
    best = selected(board)
    if best is None or not isinstance(best.get("checkpoint"), str):
        return []
    saved = _read_checkpoint_metrics(best["checkpoint"])
    classes = [str(c) for c in saved.get("classes") or []]
    matrices = {"validation": saved.get(CONFUSION_KEY)}
    record = next((r for r in records if r.trial_id == str(best["trial_id"])), None)
    if record is not None and record.test:
        matrices["test"] = record.test.get("confusion")
    found = {k: np.asarray(v, dtype=np.int64) for k, v in matrices.items()
             if v is not None and np.shape(v) == (len(classes), len(classes))}
    if not classes or not found:
        return []
    out = [f"<h2>Per class (selected trial {html.escape(str(best['trial_id']))})</h2>",
           _per_class(classes, found)]
    if len(classes) <= MATRIX_MAX_CLASSES:
        out += [f"<p>Confusion matrix on {k} (rows: true class, columns: predicted).</p>"
                + _matrix(classes, m) for k, m in found.items()]
    return out


def per_class_table(classes: list[str], confusion: np.ndarray) -> pd.DataFrame:
    """support, recall, precision and F1 of each class from one confusion matrix."""
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(1), confusion.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    return pd.DataFrame({"class": classes, "support": support, "recall": recall,
                         "precision": precision, "f1": f1})


def _per_class(classes: list[str], found: dict[str, np.ndarray]) -> str:
    tables = {k: per_class_table(classes, m) for k, m in found.items()}
    order_by = tables.get("test", tables.get("validation"))
    assert order_by is not None
    order = order_by.sort_values("recall", kind="stable").index[:TABLE_MAX_ROWS]
    head = "<th>class</th>" + "".join(
        f"<th>{k} support</th><th>{k} recall</th><th>{k} precision</th>" for k in tables)
    rows = []
    for i in order:
        cells = f"<td>{html.escape(classes[i])}</td>"
        for table in tables.values():
            row = table.loc[i]
            cells += (f"<td>{int(row['support'])}</td>{_fraction(row['recall'])}"
                      f"{_fraction(row['precision'])}")
        rows.append(f"<tr>{cells}</tr>")
    shown = "" if len(classes) <= TABLE_MAX_ROWS else f" ({TABLE_MAX_ROWS} lowest recall)"
    return (f"<p>Classes, lowest recall first{shown}.</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _matrix(classes: list[str], confusion: np.ndarray) -> str:
    peak = max(int(confusion.max(initial=0)), 1)
    head = "<th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    rows = []
    for i, name in enumerate(classes):
        cells = "".join(
            f'<td style="background: rgba(30, 110, 200, {0.75 * v / peak:.2f})">{v}</td>'
            for v in confusion[i].tolist())
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _fraction(value: float) -> str:
    return "<td></td>" if pd.isna(value) else f"<td>{value:.3f}</td>"


def _read_checkpoint_metrics(location: str) -> dict[str, Any]:
    """The plan and metrics saved beside a checkpoint (empty when it cannot be read: the
    report never fails on a moved or deleted checkpoint)."""
    try:
        return dict(json.loads(storage.read_text(storage.join(location, PLAN_FILE))))
    except (OSError, ValueError):
        return {}
