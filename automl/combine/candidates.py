"""Which board row `automl export RUN --candidate NAME` exports: a trial of `automl
combine`'s result, or a soup or the ensemble, dressed as a trial (issue 29)."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import storage
from automl.combine.result import COMBINED_JSON
from automl.errors import AutomlError

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def exported_candidate(run: Any, board: pd.DataFrame, name: str) -> Iterator[pd.Series]:
    """`candidate_row`; for the ensemble, its checkpoint is a folder staged for the export
    (members copied from the run, `automl.export.ensemble.stage_ensemble`) that lives as
    long as the `with` block."""
    row = candidate_row(run, board, name)
    if row["status"] != "ensemble":
        yield row
        return
    from automl.export.ensemble import stage_ensemble

    members = json.loads(row["checkpoint"])
    with tempfile.TemporaryDirectory(prefix="automl-ensemble-") as tmp:
        staged = Path(tmp) / "ensemble"
        stage_ensemble([(m["name"], m["weight"], m["checkpoint"]) for m in members], staged,
                       val_accuracy=row["val_accuracy"])
        row["checkpoint"] = str(staged)
        yield row


def candidate_row(run: Any, board: pd.DataFrame, name: str) -> pd.Series:
    """The board row `automl export RUN --candidate NAME` exports: a trial's own row, or for
    a soup (the ensemble) its first (heaviest) member's row with the candidate's checkpoint,
    members and scores (the member's own figures, epochs and temperature do not describe
    it). The ensemble's `checkpoint` is its members as JSON: `exported_candidate` stages
    them."""
    run.fetch(COMBINED_JSON)
    saved = run.local / COMBINED_JSON
    if not saved.is_file():
        raise AutomlError(f"--candidate {name!r}: {run} has no {COMBINED_JSON}; "
                          f"build soups and the ensemble first: automl combine {run}")
    found = {c["name"]: c for c in json.loads(saved.read_text())["candidates"]}
    if name not in found:
        raise AutomlError(f"--candidate {name!r}: not in {COMBINED_JSON}; "
                          f"known: {', '.join(map(repr, found))}")
    chosen = found[name]
    weights = {str(k): float(v) for k, v in chosen["members"].items()}
    members = sorted(weights, key=lambda m: -weights[m])  # stable: ties keep their order
    rows = {m: board[board["trial_id"].astype(str) == m] for m in members}
    missing = [m for m, r in rows.items() if r.empty]
    if missing:
        raise AutomlError(f"--candidate {name!r}: its trial {missing[0]} is not on the board")
    row = rows[members[0]].iloc[0].copy()
    if chosen["kind"] not in ("soup", "ensemble"):
        return row
    for column in row.index:
        if column.startswith(("val_", "test_", "train_")) or column in (
                "temperature", "best_epoch", "epochs", "overfit_gap", "status",
                "trainable_params", "trainable_pct"):
            row[column] = math.nan
    row["trial_id"] = name.replace(" ", "-")
    row["status"] = chosen["kind"]
    if chosen["kind"] == "ensemble":  # no one member's recipe describes it
        import pandas as pd

        # Every label at once: enlarging an object Series by a string makes it str-typed.
        fields: dict[str, Any] = {c: math.nan for c in row.index}
        fields.update({c: row[c] for c in ("trial_id", "status", "metric") if c in row.index})
        fields["checkpoint"] = json.dumps([
            {"name": m, "weight": weights[m],
             "checkpoint": str(rows[m].iloc[0]["checkpoint"])} for m in members])
        fields["ensemble_members"] = ", ".join(f"{m} × {weights[m]:.2f}" for m in members)
        row = pd.Series(fields, dtype=object)
        # Its cross-fitted accuracy (on half B, from an older `automl combine`).
        row["val_accuracy"] = float(chosen["val"])
        row["latency_ms"], row["total_params"] = chosen["latency_ms"], chosen["total_params"]
    else:
        row["checkpoint"] = chosen["checkpoint"]
        row["soup_members"] = ", ".join(members)
        row["val_accuracy"] = _accuracy(run, chosen)
    if chosen.get("test"):
        row["test_accuracy"], row["test_se"] = chosen["test"]["value"], chosen["test"]["se"]
    return row


def _accuracy(run: Any, chosen: dict[str, Any]) -> float:
    """The soup's accuracy on all of validation, as its checkpoint recorded it."""
    from automl.trial.plan import PLAN_FILE

    plan = json.loads(storage.read_text(storage.join(chosen["checkpoint"], PLAN_FILE)))
    return float(plan.get("val_accuracy", math.nan))
