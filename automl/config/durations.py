"""Durations as users write them: `90s`, `30m`, `1h30m`, or a number of seconds."""

from __future__ import annotations

import math
import re
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(value: Any) -> float:
    """Seconds in `value`: a number of seconds or text like `90s`, `30m`, `1h30m`, `2h`.

    Raises ValueError with the accepted forms when it is neither."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30m, 1h30m or 600 (seconds), got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"expected a duration like 30m, 1h30m, 90s or 600 (seconds), "
                                 f"got {value!r}") from None
        else:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration like 30m or 2h (leave it out for no "
                         f"budget), got {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """`1h05m`, `12m30s`, `45s`: how the progress line and the log show a budget."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
