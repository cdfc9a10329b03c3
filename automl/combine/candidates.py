"""Which board row `automl export RUN --candidate NAME` exports: a trial of `automl
combine`'s result, or a soup, dressed as a trial (issue 29)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from automl import storage
from automl.combine.result import COMBINED_JSON
from automl.errors import AutomlError

if TYPE_CHECKING:
    import pandas as pd


def candidate_row(run: Any, board: pd.DataFrame, name: str) -> pd.Series:
    """The board row `automl export RUN --candidate NAME` exports: a trial's own row, or for
    a soup its first member's row with the soup's checkpoint, members and scores (the
    member's own figures, epochs and temperature do not describe the soup)."""
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
    members = list(chosen["members"])
    if chosen["kind"] == "ensemble":
        raise AutomlError("--candidate ensemble: exporting an ensemble as one model is not "
                          "built yet; export a soup, or its members with --trial ID")
    rows = board[board["trial_id"].astype(str) == members[0]]
    if rows.empty:
        raise AutomlError(f"--candidate {name!r}: its trial {members[0]} is not on the board")
    row = rows.iloc[0].copy()
    if chosen["kind"] != "soup":
        return row
    for column in row.index:
        if column.startswith(("val_", "test_", "train_")) or column in (
                "temperature", "best_epoch", "epochs", "overfit_gap", "status"):
            row[column] = math.nan
    row["trial_id"] = name.replace(" ", "-")
    row["status"] = "soup"
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
