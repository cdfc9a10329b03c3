"""What combining a search's trials produces (issue 29): each candidate as validation and
test see it, and the candidate the cross-fitted validation figures prefer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

COMBINED_DIR = "combined"
"""Under a run dir: the kept soups' checkpoints and `combined.json`."""
COMBINED_JSON = f"{COMBINED_DIR}/combined.json"
KINDS = ("soup", "ensemble")


@dataclass(frozen=True)
class Candidate:
    """The selected single trial, a soup or the ensemble, as validation and test see it."""

    kind: str
    """selected (the search's own pick, for reference) | single | soup | ensemble."""
    name: str
    members: dict[str, float]
    """Trial id → weight (a soup's members are averaged uniformly in weight space)."""
    fit: float
    """The metric on the rows its members and weights were chosen on (all of validation;
    optimistic: shown for reference)."""
    val: float
    """The cross-fitted metric candidates compete on: every validation row predicted by the
    same kind of choice made on the other half (before `folds`: on half B)."""
    val_se: float
    latency_ms: float | None = None
    total_params: float | None = None
    checkpoint: str | None = None
    """A soup's averaged checkpoint (exports like a trial's)."""
    seconds: float = 0.0
    test: dict[str, float] = field(default_factory=dict)
    """After the choice: value, se, examples, and the paired gain over the search's selected
    trial with its se."""


@dataclass(frozen=True)
class Combination:
    """What `combine_rows` built: the candidates and the one the cross-fitted figures
    prefer."""

    candidates: list[Candidate]
    chosen: str
    metric: str
    fit_rows: int
    select_rows: int
    folds: int = 0
    """Cross-fitting folds (0: an older result, chosen on half A and compared on half B)."""

    @property
    def columns(self) -> tuple[str, str]:
        """Names of the `fit` and `val` figures."""
        return ("in-sample", "cross-fit") if self.folds else ("val A", "val B")

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Combination:
        """Read what `to_json` wrote (`combined.json`)."""
        return cls([Candidate(**c) for c in saved["candidates"]], saved["chosen"],
                   saved["metric"], saved["fit_rows"], saved["select_rows"],
                   saved.get("folds", 0))

    def to_json(self) -> dict[str, Any]:
        """Plain values for `combined.json`."""
        return {"metric": self.metric, "chosen": self.chosen, "fit_rows": self.fit_rows,
                "select_rows": self.select_rows, "folds": self.folds,
                "candidates": [asdict(c) for c in self.candidates]}

    def table(self) -> str:
        """One line per candidate, for the terminal."""
        fit, val = self.columns
        lines = [f"{'candidate':<28}{'members':>8}{fit:>10}{val:>15}{'test':>15}"
                 f"{'test gain':>16}{'latency':>10}"]
        for c in self.candidates:
            t = c.test
            test = f"{t['value']:.4f}±{t['se']:.4f}" if t else "—"
            gain = (f"{t['gain']:+.4f}±{t['gain_se']:.4f}" if t and "gain" in t else "")
            latency = f"{c.latency_ms:.2f} ms" if c.latency_ms is not None else "—"
            mark = " ←" if c.name == self.chosen else ""
            lines.append(f"{c.name:<28}{len(c.members):>8}{c.fit:>10.4f}"
                         f"{c.val:>8.4f}±{c.val_se:.4f}{test:>15}{gain:>16}{latency:>10}{mark}")
        return "\n".join(lines)
