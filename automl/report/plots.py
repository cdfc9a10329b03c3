"""The report's figures as inline SVG (matplotlib, Agg): readable offline, no JavaScript.

Each function takes the board (and histories) and returns one `<svg>` string, or a short
note when the run has nothing to show for it (e.g. no from-scratch trial to compare with).
"""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd

from automl.runs.history import LOGGED_AT, TrialRecord

STATUS_STYLE = {
    "finished": {"color": "#1f77b4", "linestyle": "-", "alpha": 0.9},
    "stopped": {"color": "#7f7f7f", "linestyle": "--", "alpha": 0.7},
    "out_of_time": {"color": "#bcbd22", "linestyle": "-.", "alpha": 0.8},
    "errored": {"color": "#d62728", "linestyle": ":", "alpha": 0.9},
    "interrupted": {"color": "#ff7f0e", "linestyle": "-.", "alpha": 0.9},
    "running": {"color": "#2ca02c", "linestyle": "-", "alpha": 0.9},
}


def _figure(width: float = 6.4, height: float = 3.6) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=96)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline in HTML


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def best_so_far(records: list[TrialRecord], metric: str = "val_accuracy") -> str:
    """Best objective reached so far against seconds since the search started."""
    points = _epoch_points(records, metric)
    if not points:
        return _note("No trial has reported an epoch yet.")
    xs, ys = _running_best(points)
    fig, ax = _figure()
    ax.step(xs, ys, where="post", color="#1f77b4")
    ax.scatter(xs, [v for _, v in points], s=8, color="#aaaaaa", label="each epoch")
    ax.set_xlabel("seconds since the search started")
    ax.set_ylabel(f"best {metric} so far")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def learning_curves(records: list[TrialRecord], board: pd.DataFrame,
                    metric: str = "val_accuracy") -> str:
    """Every trial's validation curve, styled by its status (stopped and errored too)."""
    status = dict(zip(board["trial_id"].astype(str), board["status"], strict=True))
    fig, ax = _figure()
    shown: set[str] = set()
    for record in records:
        epochs = [(h.get("epoch"), h.get(metric)) for h in record.history
                  if _finite(h.get(metric))]
        kind = status.get(record.trial_id, "finished")
        style = STATUS_STYLE.get(kind, STATUS_STYLE["finished"])
        label = kind if kind not in shown else None
        shown.add(kind)
        if epochs:
            ax.plot([e for e, _ in epochs], [v for _, v in epochs], marker="o", markersize=3,
                    linewidth=1.2, label=label, **style)
        if kind == "errored":
            ax.scatter([epochs[-1][0] if epochs else 0], [epochs[-1][1] if epochs else 0],
                       marker="x", s=50, color=style["color"], label=None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def by_category(board: pd.DataFrame, column: str, xlabel: str,
                metric: str = "val_accuracy") -> str:
    """Each scored trial's `metric` (the ranked column) per value of `column` (jittered strip
    plot), with ± 1 standard error bars where the board has them (`val_se`, its SE)."""
    scored = board[board[metric].notna()]
    if scored.empty:
        return _note("No trial has a validation score yet.")
    labels = scored[column].astype(str)
    order = sorted(labels.unique())
    fig, ax = _figure()
    for i, value in enumerate(order):
        ys = scored.loc[labels == value, metric].to_numpy()
        xs = [i + 0.15 * math.sin(7.3 * k) for k in range(len(ys))]  # deterministic jitter
        points = ax.scatter(xs, ys, s=22, alpha=0.8)
        if "val_se" in scored:
            errors = pd.to_numeric(scored.loc[labels == value, "val_se"], errors="coerce")
            ax.errorbar(xs, ys, yerr=errors.fillna(0).to_numpy(), fmt="none", linewidth=0.8,
                        alpha=0.6, ecolor=points.get_facecolor()[0])
        ax.hlines(ys.max(), i - 0.3, i + 0.3, color="black", linewidth=1)
    ax.set_xticks(range(len(order)), order, rotation=20 if len(order) > 3 else 0, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    return _svg(fig)


def lr_scatter(board: pd.DataFrame) -> str:
    """Head LR against backbone LR (log-log), coloured by accuracy; linear probes, which have
    no backbone LR, sit on the bottom edge."""
    scored = board[board["val_accuracy"].notna() & board["head_lr"].notna()]
    if scored.empty:
        return _note("No trial has a validation score yet.")
    fig, ax = _figure()
    probes = scored["unfreeze_fraction"].fillna(0) == 0
    floor = scored["backbone_lr"].where(~probes).min()
    floor = (floor / 3) if _finite(floor) else 1e-6
    ys = scored["backbone_lr"].where(~probes, floor)
    points = ax.scatter(scored["head_lr"], ys, c=scored["val_accuracy"], cmap="viridis", s=30,
                        marker="o", edgecolors="black", linewidths=0.3)
    ax.scatter(scored.loc[probes, "head_lr"], ys[probes], marker="v", s=40,
               facecolors="none", edgecolors="black", label="linear probe (frozen)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("head_lr")
    ax.set_ylabel("backbone_lr")
    fig.colorbar(points, ax=ax, label="val_accuracy")
    if probes.any():
        ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def transfer_gain(board: pd.DataFrame) -> str:
    """Each pretrained trial's gain over the best from-scratch trial of its architecture."""
    gains = board[board["transfer_gain"].notna()].sort_values("transfer_gain")
    if gains.empty:
        return _note("No pretrained trial has a from-scratch trial of the same architecture "
                     "to compare with. Add the backbone with <code>weights: scratch</code> "
                     "to the search space to measure transfer; if it is there, the searcher "
                     "did not sample it in this run (more trials would).")
    fig, ax = _figure(height=max(2.4, 0.28 * len(gains) + 1))
    colors = ["#d62728" if g < 0 else "#2ca02c" for g in gains["transfer_gain"]]
    names = [f"{t} {b}" for t, b in zip(gains["trial_id"], gains["backbone"], strict=True)]
    ax.barh(names, gains["transfer_gain"], color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("val_accuracy − best from-scratch val_accuracy (same architecture)")
    return _svg(fig)


def overfitting(board: pd.DataFrame, threshold: float) -> str:
    """Train against validation accuracy at each trial's selected epoch."""
    scored = board[board["train_accuracy"].notna() & board["val_accuracy"].notna()]
    if scored.empty:
        return _note("No trial reported a training accuracy.")
    fig, ax = _figure()
    flagged = scored["overfit_gap"] > threshold
    ax.scatter(scored.loc[~flagged, "val_accuracy"], scored.loc[~flagged, "train_accuracy"],
               s=24, color="#1f77b4", label="ok")
    ax.scatter(scored.loc[flagged, "val_accuracy"], scored.loc[flagged, "train_accuracy"],
               s=30, color="#d62728", label=f"gap > {threshold:g}")
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    ax.plot([0, 1 - threshold], [threshold, 1], color="#d62728", linewidth=0.8,
            linestyle="--")
    ax.set_xlabel("val_accuracy (selected epoch)")
    ax.set_ylabel("train_accuracy (same epoch)")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def _epoch_points(records: list[TrialRecord], metric: str) -> list[tuple[float, float]]:
    """(seconds since the search started, score) of every reported epoch, in time order."""
    points = sorted((h[LOGGED_AT], h[metric]) for r in records for h in r.history
                    if isinstance(h.get(LOGGED_AT), (int, float)) and _finite(h.get(metric)))
    if not points:
        return []
    start = min([r.started_at for r in records if r.started_at] or [points[0][0]])
    return [(when - start, value) for when, value in points]


def _running_best(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The points' times and the best score reached by each."""
    best, ys = -math.inf, []
    for _, value in points:
        best = max(best, value)
        ys.append(best)
    return [t for t, _ in points], ys


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def best_so_far_runs(runs: dict[str, list[TrialRecord]], metric: str = "val_accuracy") -> str:
    """Best-so-far curves of several runs on one axis (time since each run started)."""
    fig, ax = _figure()
    for name, records in runs.items():
        points = _epoch_points(records, metric)
        if points:
            ax.step(*_running_best(points), where="post", label=name)
    ax.set_xlabel("seconds since the run's search started")
    ax.set_ylabel(f"best {metric} so far")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)
