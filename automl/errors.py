"""User-facing errors: one clear message that says what is wrong, where, and how to fix it."""

from __future__ import annotations


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
