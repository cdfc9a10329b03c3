"""The report's section on soups and the ensemble (`automl combine RUN`, issue 29): each
candidate beside the search's selected trial, on validation (cross-fitted) and on test."""

from __future__ import annotations

import html

from automl.combine.result import Combination


def section(found: Combination | None) -> list[str]:
    """HTML for the section (nothing when the run was never combined)."""
    if found is None:
        return []

    def cell(value: float | None, se: float | None = None, sign: str = "") -> str:
        if value is None:
            return "<td>—</td>"
        text = f"{value:{sign}.4f}" + (f" ± {se:.4f}" if se is not None else "")
        return f"<td>{text}</td>"

    rows = []
    for c in found.candidates:
        test = c.test or {}
        members = ", ".join(f"{t} × {w:.2f}" if c.kind == "ensemble" else t
                            for t, w in c.members.items())
        mark = " ←" if c.name == found.chosen else ""
        rows.append(
            f"<tr><td>{html.escape(c.name)}{mark}</td><td>{html.escape(c.kind)}</td>"
            f"<td>{html.escape(members)}</td>{cell(c.fit)}{cell(c.val, c.val_se)}"
            f"{cell(test.get('value'), test.get('se'))}"
            f"{cell(test.get('gain'), test.get('gain_se'), '+')}"
            f"{cell(c.latency_ms)}</tr>")
    fit, val = found.columns
    if found.folds:
        how = (f"each kind chosen on all {found.fit_rows} validation rows and compared by "
               f"cross-fitting ({found.folds} halves: every row predicted by the same kind of "
               "choice made on the other half; ← the one it prefers)")
    else:
        how = (f"members and weights chosen on validation half A ({found.fit_rows} rows), "
               f"candidates compared on half B ({found.select_rows} rows; ← the one it "
               "prefers)")
    return [
        "<h2>Beyond the best single trial: soups and the ensemble</h2>",
        f"<p>Built by <code>automl combine</code>: {how}, then scored on the test split; "
        "the gain is paired, against the search's selected trial (bootstrap SE). The "
        "in-sample figures flatter every candidate; compare the cross-fitted ones.</p>",
        f"<table><tr><th>candidate</th><th>kind</th><th>members</th><th>{fit}</th>"
        f"<th>{val} ({html.escape(found.metric)})</th><th>test</th><th>test gain</th>"
        "<th>latency ms</th></tr>",
        *rows, "</table>",
    ]
