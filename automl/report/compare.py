"""Runs side by side: each run's selected configuration and its best-so-far curve."""

from __future__ import annotations

import html

import pandas as pd

from automl.report import plots
from automl.runs.history import TrialRecord
from automl.runs.selection import selected

COMPARED = ["trial_id", "backbone", "weights", "unfreeze_fraction", "unfreeze_depth",
            "head_lr", "backbone_lr", "layer_decay", "batch_size", "metric", "val_accuracy",
            "val_balanced_accuracy", "val_macro_f1", "val_se", "test_accuracy",
            "test_balanced_accuracy", "test_macro_f1", "test_se", "best_epoch",
            "epochs", "transfer_gain", "overfit_gap", "trainable_params", "latency_ms",
            "trial_time_s"]


def compare_table(boards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One column per run: its selected trial's configuration and results, plus the run's
    trial count and total device-hours."""
    columns = {}
    for name, board in boards.items():
        best = selected(board)
        if best is None:
            best = pd.Series(dtype=object)
        column = {k: best.get(k) for k in COMPARED}
        column["trials"] = len(board)
        column["device_hours (run)"] = float(board["device_hours"].sum())
        columns[name] = column
    return pd.DataFrame(columns)


def compare_runs(boards: dict[str, pd.DataFrame], records: dict[str, list[TrialRecord]]
                 ) -> str:
    """A self-contained HTML page: the compare table and the runs' best-so-far curves."""
    table = compare_table(boards).to_html(na_rep="", float_format=lambda v: f"{v:.4g}")
    names = ", ".join(html.escape(n) for n in boards)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>automl compare'
            '</title><style>body{font:14px system-ui,sans-serif;margin:24px}table{border-'
            'collapse:collapse}td,th{padding:3px 8px;border:1px solid #ddd}svg{max-width:'
            f'900px;height:auto}}</style></head><body><h1>Compare: {names}</h1>{table}'
            f"<h2>Best so far vs wall time</h2>{plots.best_so_far_runs(records)}</body></html>")
