"""One search per run dir at a time: `RUN/.automl-lock.json` names the driver holding it.

The lock is created exclusively (`O_EXCL`) on a local or shared file system and names the
host, the pid and a heartbeat that a thread of the holder refreshes every `HEARTBEAT_S`. A
lock is stale, and is taken over, when its pid is dead on this host, or when its heartbeat
is older than three heartbeats (a driver on another host that died, a lost head node).
Object stores have no exclusive create: there the lock is best-effort (read, then write).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from automl import paths, storage
from automl.errors import AutomlError
from automl.ownership import write_atomic
from automl.runs.layout import LOCK_FILE

HEARTBEAT_S = 10.0
STALE_AFTER_S = 3 * HEARTBEAT_S


class RunLock:
    """Held while a search (or resume) drives a run dir; `with RunLock(location): ...`."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.path = storage.join(location, LOCK_FILE)
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise AutomlError naming the search that holds it."""
        for _ in range(2):
            if self._create():
                break
            holder = self._holder()
            if holder is not None and not _stale(holder):
                raise AutomlError(
                    f"{self.location}: another search is running in this run dir (pid "
                    f"{holder.get('pid')} on {holder.get('host')}, since "
                    f"{time.strftime('%H:%M:%S', time.localtime(holder.get('started', 0)))}); "
                    "wait for it, or stop it, then resume with --resume")
            storage.remove_file(self.path)  # a dead holder's (or unreadable) lock
        else:
            raise AutomlError(f"{self.location}: could not take the run dir's lock")
        self._thread = threading.Thread(target=self._beat, name="automl-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self._holder()
        if holder is not None and holder.get("token") == self.token:
            storage.remove_file(self.path)

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                           "token": self.token, "started": time.time(),
                           "heartbeat": time.time()}).encode()

    def _create(self) -> bool:
        if paths.is_remote(self.path):
            if storage.exists(self.path):
                return False
            storage.write_bytes(self.path, self._record())
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(self._record())
        return True

    def _holder(self) -> dict[str, Any] | None:
        try:
            raw = json.loads(storage.read_text(self.path))
        except (OSError, ValueError, AutomlError):
            return None
        return raw if isinstance(raw, dict) else None

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            holder = self._holder()
            if holder is None or holder.get("token") != self.token:
                return  # taken over (we were judged dead): do not fight for it
            holder["heartbeat"] = time.time()
            try:
                if paths.is_remote(self.path):
                    storage.write_text(self.path, json.dumps(holder))
                else:
                    write_atomic(Path(self.path), json.dumps(holder))
            except OSError:
                pass  # a missed beat; the next one retries


def _stale(holder: dict[str, Any]) -> bool:
    """A holder that is gone: its pid is dead on this host, or its heartbeat is old."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    beat = holder.get("heartbeat")
    return not isinstance(beat, (int, float)) or time.time() - beat > STALE_AFTER_S
