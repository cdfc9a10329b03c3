"""User-facing errors: one clear message that says what is wrong, where, and how to fix it."""

from __future__ import annotations

import re
from typing import Any


class AutomlError(Exception):
    """An error the user caused and can fix; the CLI prints it as one message, no traceback."""


class ConfigError(AutomlError):
    """A search space that is not well-formed; holds every problem found, not just the first."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{source} is not a valid search space, found {len(self.problems)} problem(s):\n{lines}"
        )


class DataError(AutomlError):
    """Missing, empty or unusable training data."""


class BackboneError(AutomlError):
    """An unknown backbone or pretrained weights that cannot be loaded."""


class TrialFailed(RuntimeError):
    """A single trial failed for a reason worth showing on the leaderboard (e.g. NaN loss)."""


class SearchFailed(AutomlError):
    """A search ran but no trial produced a result; `result` still holds the board and logs."""

    exit_code = 1

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class SearchInterrupted(AutomlError):
    """Ctrl-C stopped a search: finished trials are on the partial board, in-flight ones
    continue from their checkpoints with `automl search --resume`."""

    exit_code = 130


def root_cause(error: BaseException | str) -> str:
    """The innermost 'SomeError: message' line of a (Ray-wrapped) error or its text."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for line in reversed(lines):
        # The trial driver re-raises the worker's error as "TrialFailed: <worker error line>".
        while (match := _ERROR_LINE.match(line)) and _ERROR_LINE.match(match[2]):
            line = match[2]
        if _ERROR_LINE.match(line):
            return line
    if lines:
        return lines[-1]
    return type(error).__name__ if isinstance(error, BaseException) else "unknown error"


_ERROR_LINE = re.compile(r"^([\w.]*(?:Error|Exception|TrialFailed)): (.*)$")
