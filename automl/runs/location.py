"""Where a search lives: a local/NFS folder or a storage URI, and the driver's working copy.

Ray writes trial checkpoints (`trials/`) and the Tune experiment (`tune/`) straight to the
run's location from whichever node runs them. The driver's own files (config, board, logs,
export) are written to `local` first and uploaded by `sync()`; for a local run both are the
same folder and `sync()` does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from automl import paths, storage

_restoring: list[RunDir] = []


@dataclass(frozen=True)
class RunDir:
    """A search's location and the driver's working folder for it."""

    location: str
    """Absolute local path or remote URI."""
    local: Path
    """Driver-side folder; equals `location` for local runs."""

    @classmethod
    def at(cls, location: str | Path, what: str = "--run-dir") -> RunDir:
        """The run dir at a user-given path or URI (resolved on the driver)."""
        resolved = paths.resolve(location, what)
        if paths.is_remote(resolved):
            return cls(resolved, storage.mirror_dir(resolved))
        return cls(resolved, Path(resolved))

    @property
    def remote(self) -> bool:
        """True when the run lives on object storage (`s3://`, `gs://`, ...)."""
        return self.local != Path(self.location)

    def uri(self, *parts: str) -> str:
        """A location inside the run, for Ray and other nodes."""
        return storage.join(self.location, *parts)

    def sync(self) -> None:
        """Upload the driver's files to the run's location (remote runs only)."""
        if self.remote and self.local.is_dir():
            storage.upload(self.local, self.location)

    def fetch(self, *names: str) -> None:
        """Download these files of a remote run into `local` (for resume and reading)."""
        if not self.remote:
            return
        self.local.mkdir(parents=True, exist_ok=True)
        for file in names:
            if storage.exists(self.uri(file)):
                storage.download(self.uri(file), self.local / file)

    def disk_usage(self) -> int:
        """Bytes the run keeps at its location (trials, experiment, board, export)."""
        return storage.usage(self.location)

    def __str__(self) -> str:
        return self.location


@contextlib.contextmanager
def restoring_into(run: RunDir) -> Iterator[None]:
    """Tune unpickles the callbacks an experiment was started with, paths and all, and a run
    dir may have been moved or copied since: callbacks unpickled inside this block take
    `run` (see `restored_run`)."""
    _restoring.append(run)
    try:
        yield
    finally:
        _restoring.remove(run)


def restored_run() -> RunDir | None:
    """The run a callback being unpickled now belongs to (None outside a restore)."""
    return _restoring[-1] if _restoring else None
