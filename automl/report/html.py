"""One self-contained HTML report of a run: inline SVG figures, a sortable board (a few lines
of inline JavaScript), the transfer risks and the run's config. No CDN, works offline."""

from __future__ import annotations

import html
import json
import time
from typing import Any

import pandas as pd

from automl.combine.result import Combination
from automl.report import classes, plots
from automl.report.combined import section as combined_section
from automl.runs.history import TrialRecord
from automl.runs.leaderboard import OVERFIT_GAP
from automl.runs.selection import Constraints, has_checkpoint, selected
from automl.search.transferability import ranking_quality

TABLE_COLUMNS = [
    "rank", "trial_id", "status", "eligible", "backbone", "weights", "unfreeze_fraction",
    "unfreeze_depth", "head_lr", "backbone_lr", "layer_decay", "lp_ft_epochs", "weight_decay",
    "batch_size", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_se",
    "test_accuracy", "test_balanced_accuracy", "test_macro_f1", "temperature",
    "test_ece_calibrated", "best_epoch", "epochs",
    "train_accuracy", "overfit_gap",
    "transfer_gain", "knn_accuracy", "trial_time_s", "device_hours", "trainable_params",
    "trainable_pct", "samples_per_s", "peak_memory_mb", "latency_ms", "startup_s", "restarts",
    "error",
]
_SCRIPT = """
window.__reportErrors = [];
window.addEventListener('error', e => { window.__reportErrors.push(String(e.message)); });
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const up = th.dataset.dir !== 'asc'; th.dataset.dir = up ? 'asc' : 'desc';
  const key = tr => { const t = tr.children[col].dataset.v ?? tr.children[col].textContent;
                      const n = parseFloat(t); return isNaN(n) ? t : n; };
  Array.from(body.rows).sort((a, b) => { const x = key(a), y = key(b);
      const r = (typeof x === typeof y) ? (x > y) - (x < y) : (typeof x === 'number' ? -1 : 1);
      return up ? r : -r; }).forEach(tr => body.appendChild(tr));
}
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('th[data-sort]').forEach(th => th.addEventListener('click',
      () => sortBy(th)));
  document.body.dataset.figures = document.querySelectorAll('figure svg').length;
  document.body.dataset.jsErrors = window.__reportErrors.length;
  document.body.dataset.ready = '1';
});
"""
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.card b { display: block; font-size: 18px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
figure svg { width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 12px; } th, td { padding: 3px 6px; }
th { background: #f3f3f3; cursor: pointer; position: sticky; top: 0; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; } .scroll { overflow: auto; max-height: 640px; }
tr.errored td { color: #b00; } tr.selected td { background: #e6f4ea; font-weight: 600; }
.flag { color: #b00; } .note { color: #666; font-style: italic; }
pre { background: #f7f7f7; padding: 10px; overflow: auto; font-size: 12px; }
"""


def build_report(board: pd.DataFrame, records: list[TrialRecord], config: dict[str, Any],
                 title: str, state: str, constraints: Constraints | None = None,
                 metric: str = "val_accuracy", duplicates: dict[str, Any] | None = None,
                 combined: Combination | None = None) -> str:
    """The report as one HTML string (see the module doc); `combined`: what `automl
    combine` built, when it ran."""
    constraints = constraints or Constraints()
    name = metric.removeprefix("val_").replace("_", " ").capitalize()
    figures = [
        ("Best so far vs wall time", plots.best_so_far(records, metric)),
        ("Learning curves (every trial)", plots.learning_curves(records, board, metric)),
        (f"{name} by backbone", plots.by_category(
            board.assign(choice=board["backbone"] + ":" + board["weights"].astype(str)),
            "choice", "backbone:weights", metric)),
        (f"{name} by unfreeze depth", plots.by_category(
            board, "unfreeze_fraction", "unfreeze_fraction (0 = linear probe, 1 = full)",
            metric)),
        ("Learning rates, coloured by accuracy", plots.lr_scatter(board)),
        ("Transfer gain over training from scratch", plots.transfer_gain(board)),
        (f"Overfitting: train vs validation accuracy (flag: gap > {OVERFIT_GAP:g})",
         plots.overfitting(board, OVERFIT_GAP)),
    ]
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p>Run state: <b>{_e(state)}</b> · report built {time.strftime('%Y-%m-%d %H:%M')}"
        "</p>",
        _cards(board, constraints, metric),
        *classes.section(board, records),
        "<h2>Transfer risks</h2>", _risks(board, duplicates),
        *_ranking(board),
        *combined_section(combined),
        "<h2>Figures</h2>", '<div class="grid">',
        *(f"<figure><figcaption>{_e(c)}</figcaption>{svg}</figure>" for c, svg in figures),
        "</div>",
        "<h2>Leaderboard</h2>",
        "<p>Click a column to sort. Full columns: <code>leaderboard.csv</code> / "
        "<code>.parquet</code> in the run.</p>",
        _table(board),
        "<h2>Search configuration</h2>",
        f"<pre>{html.escape(json.dumps(config, indent=2, default=str), quote=False)}</pre>",
    ]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
            f"</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def _ranking(board: pd.DataFrame) -> list[str]:
    """The backbone ranking made before the search against the accuracy each backbone
    reached, with Kendall's τ (nothing when the search ranked no backbones)."""
    table = ranking_quality(board)
    if table.empty:
        return []
    taus = table.attrs["kendall_tau"]
    said = ", ".join(f"{score} τ = {tau:+.2f}" if tau is not None else f"{score} τ: n/a"
                     for score, tau in taus.items())
    rows = "".join(
        f"<tr><td>{_e(choice)}</td><td>{r.knn_accuracy:.3f}</td><td>{r.logme:.3f}</td>"
        f"<td>{r.best_val_accuracy:.4f}</td><td>{int(r.trials)}</td></tr>"
        for choice, r in table.iterrows())
    return ["<h2>Backbone ranking before the search</h2>",
            "<p>Scores of each pretrained backbone's frozen features (k-NN accuracy on "
            "validation examples, LogME), computed before the first trial, against the best "
            f"accuracy its fine-tunes reached. Kendall's τ of score vs accuracy: {said} "
            "(+1: the score ordered the backbones exactly as fine-tuning did).</p>",
            "<table><thead><tr><th>backbone</th><th>k-NN accuracy</th><th>LogME</th>"
            f"<th>best val_accuracy</th><th>trials</th></tr></thead><tbody>{rows}</tbody>"
            "</table>"]


def _cards(board: pd.DataFrame, constraints: Constraints, objective: str) -> str:
    counts = board["status"].value_counts()
    best = selected(board)
    cards = [("trials", str(len(board))),
             *((s, str(int(n))) for s, n in counts.items()),
             ("trial time", f"{board['trial_time_s'].sum() / 60:.1f} min"),
             (f"{board['device'].iloc[0] if len(board) else 'cpu'}-hours",
              f"{board['device_hours'].sum():.3f}")]
    if best is not None:
        cards.insert(0, ("selected", f"{best['trial_id']} · {best[objective]:.4f}"))
        if pd.notna(best.get(test_of(objective))):
            cards.insert(1, (f"test {objective.removeprefix('val_')}",
                             f"{best[test_of(objective)]:.4f} {_se(best.get('test_se'))}"))
    html_cards = "".join(f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards)
    rule = (f"Selection: the best {objective} over a trial's epochs (search.metric); ties go "
            "to the cheaper trial (fewer device-hours, then fewer trainable parameters).")
    if constraints.describe():
        rule += f" Constraints: {_e(constraints.describe())}."
    chosen = ""
    if best is not None:
        chosen = (f"<p>Selected: <b>{_e(best['trial_id'])}</b> — {_e(best['backbone'])} "
                  f"({_e(best['weights'])}), unfreeze {best['unfreeze_fraction']:g}, "
                  f"head_lr {best['head_lr']:.3g}, {objective} {best[objective]:.4f} "
                  f"{_se(best.get('val_se'))}at epoch {best['best_epoch']:.0f}."
                  f"{_test(best, objective)}{_calibration(best)}</p>")
    return (f'<div class="cards">{html_cards}</div><p>{rule}</p>{chosen}'
            f"{_within_noise(board, best, objective)}")


def _within_noise(board: pd.DataFrame, best: pd.Series | None, objective: str) -> str:
    """Which runners-up the selected trial (`best`) beat by less than twice the standard
    error of the difference (√(SE₁² + SE₂²); the same validation examples make it
    conservative)."""
    if best is None or "val_se" not in board or pd.isna(best.get("val_se")):
        return ""
    others = board[has_checkpoint(board) & (board["trial_id"] != best["trial_id"])]
    margin = 2 * (best["val_se"] ** 2 + others["val_se"].astype(float) ** 2) ** 0.5
    close = others[best[objective] - others[objective] < margin]
    if close.empty:
        return ""
    names = ", ".join(f"{_e(t)} ({v:.4f})" for t, v in zip(close["trial_id"], close[objective],
                                                          strict=True))
    return (f"<p class='flag'>Within noise: {len(close)} other trial(s) scored within two "
            f"standard errors of the selected one on validation — {names}; which of them is "
            "best is not resolved by this validation set.</p>")


def _se(value: Any) -> str:
    """`± 0.0171 ` for a standard error, empty when there is none (older runs)."""
    return f"± {value:.4f} " if isinstance(value, (int, float)) and pd.notna(value) else ""


def test_of(objective: str) -> str:
    """The board's test column of a validation column (`val_macro_f1` → `test_macro_f1`)."""
    return "test_" + objective.removeprefix("val_")


def _test(best: pd.Series, objective: str) -> str:
    """What the selected model scored on the test split, and how optimistic validation was
    (it picked the best of many noisy estimates on the same examples)."""
    test = best.get(test_of(objective))
    if test is None or pd.isna(test):
        return " No test split: its validation score is optimistic (set data.test_path)."
    return (f" On the test split, which no trial, ranking or selection saw: "
            f"<b>{test:.4f} {_se(best.get('test_se'))}</b>(selection optimism "
            f"{best[objective] - test:+.4f}).")


def _calibration(best: pd.Series) -> str:
    """The selected model's temperature and its expected calibration error before/after."""
    temperature = best.get("temperature")
    if temperature is None or pd.isna(temperature):
        return ""
    where, before, after = "validation (where it was fitted)", best["val_ece"], \
        best["val_ece_calibrated"]
    if pd.notna(best.get("test_ece")):
        where, before, after = "test", best["test_ece"], best["test_ece_calibrated"]
    return (f" Its probabilities are calibrated by a temperature of {temperature:.3g} "
            f"(fitted on validation; the export carries it): expected calibration error on "
            f"{where} {before:.3f} → <b>{after:.3f}</b>.")


def _risks(board: pd.DataFrame, duplicates: dict[str, Any] | None = None) -> str:
    negative = board[board["negative_transfer"].fillna(False).astype(bool)]
    over = board[board["overfitting"].fillna(False).astype(bool)]
    items = []
    if board["transfer_gain"].notna().any():
        items.append(f"<li>Negative transfer: <span class='flag'>{len(negative)}</span> "
                     "pretrained trial(s) lost to the best from-scratch trial of their "
                     "architecture" + (": " + ", ".join(
                         f"{t} ({g:+.3f})" for t, g in zip(negative["trial_id"],
                                                           negative["transfer_gain"],
                                                           strict=True)) if len(negative)
                                       else "") + ".</li>")
    else:
        items.append("<li>Negative transfer: not measured (no from-scratch trial of a "
                     "searched architecture).</li>")
    items.append(f"<li>Overfitting: <span class='flag'>{len(over)}</span> trial(s) with "
                 f"train − validation accuracy above {OVERFIT_GAP:g} at the selected epoch"
                 + (": " + ", ".join(f"{t} ({g:.3f})" for t, g in zip(
                     over["trial_id"], over["overfit_gap"], strict=True)) if len(over)
                    else "") + ".</li>")
    items.append(_leakage(duplicates))
    return "<ul>" + "".join(items) + "</ul>"


def _leakage(found: dict[str, Any] | None) -> str:
    """The exact-duplicate check of the data (`automl.data.duplicates`)."""
    if found is None:
        return "<li>Leakage across splits: not checked (a run from before the check).</li>"
    across = {k: v for k, v in (found.get("across") or {}).items() if v}
    if not across:
        return ("<li>Leakage across splits: no validation or test example is an exact "
                f"duplicate of an earlier split's ({found.get('within', 0)} repeat(s) "
                "within a split).</li>")
    pairs = ", ".join(f"{n} {_e(k)}" for k, n in across.items())
    fate = ("removed from their split" if found.get("removed")
            else "<span class='flag'>kept</span> (data.drop_duplicates: false)")
    examples = "; ".join(f"{_e(b)} = {_e(a)}" for a, b in found.get("examples", [])[:3])
    return (f"<li>Leakage across splits: <span class='flag'>{sum(across.values())}</span> "
            f"exact duplicate(s) ({pairs}), {fate}. E.g. {examples}.</li>")


def _table(board: pd.DataFrame) -> str:
    columns = [c for c in TABLE_COLUMNS if c in board.columns]
    head = "".join(f"<th data-sort>{_e(c)}</th>" for c in columns)
    rows = []
    best = selected(board)
    chosen = best["trial_id"] if best is not None else None
    for _, row in board.iterrows():
        cls = "selected" if row["trial_id"] == chosen else str(row["status"])
        cells = "".join(_cell(row[c]) for c in columns)
        rows.append(f'<tr class="{_e(cls)}">{cells}</tr>')
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "<td></td>"
    if isinstance(value, float):
        return f'<td data-v="{value!r}">{value:.4g}</td>'
    return f"<td>{_e(str(value))}</td>"


def _e(text: Any) -> str:
    return html.escape(str(text))
