"""What a run knows about the trial being exported: its board row, data, search and refit,
and the validation rows the formats are checked on (`ExportContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class ExportContext:
    """What the run knows about the exported trial (all optional: a bare checkpoint exports
    too, checked on a synthetic input and with a shorter card)."""

    examples: pa.Table | None = None
    """Prepared validation rows of the trial's data (the formats are checked on them)."""
    trial: dict[str, Any] = field(default_factory=dict)
    """The trial's leaderboard row."""
    data: dict[str, Any] = field(default_factory=dict)
    """Source, classes, train/val sizes, text column."""
    search: dict[str, Any] = field(default_factory=dict)
    """The search that produced the trial: space, trials, how many finished."""
    refit: dict[str, Any] | None = None
    """Set when the weights come from a refit on train + validation."""
    calibration: dict[str, Any] | None = None
    """The trial's temperature scaling (`Calibration.to_json()`): its temperature is folded
    into the exported classifier."""
