"""What combining a search's trials produces (issue 29): each candidate as validation and
test see it, and the candidate validation half B prefers."""

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
    """The metric on half A (where members and weights were chosen)."""
    val: float
    """The metric on half B (where candidates compete)."""
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
    """What `combine_rows` built: the candidates and the one half B prefers."""

    candidates: list[Candidate]
    chosen: str
    metric: str
    fit_rows: int
    select_rows: int

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Combination:
        """Read what `to_json` wrote (`combined.json`)."""
        return cls([Candidate(**c) for c in saved["candidates"]], saved["chosen"],
                   saved["metric"], saved["fit_rows"], saved["select_rows"])

    def to_json(self) -> dict[str, Any]:
        """Plain values for `combined.json`."""
        return {"metric": self.metric, "chosen": self.chosen, "fit_rows": self.fit_rows,
                "select_rows": self.select_rows,
                "candidates": [asdict(c) for c in self.candidates]}

    def table(self) -> str:
        """One line per candidate, for the terminal."""
        lines = [f"{'candidate':<28}{'members':>8}{'val A':>8}{'val B':>15}{'test':>15}"
                 f"{'test gain':>16}{'latency':>10}"]
        for c in self.candidates:
            t = c.test
            test = f"{t['value']:.4f}±{t['se']:.4f}" if t else "—"
            gain = (f"{t['gain']:+.4f}±{t['gain_se']:.4f}" if t and "gain" in t else "")
            latency = f"{c.latency_ms:.2f} ms" if c.latency_ms is not None else "—"
            mark = " ←" if c.name == self.chosen else ""
            lines.append(f"{c.name:<28}{len(c.members):>8}{c.fit:>8.4f}"
                         f"{c.val:>8.4f}±{c.val_se:.4f}{test:>15}{gain:>16}{latency:>10}{mark}")
        return "\n".join(lines)
