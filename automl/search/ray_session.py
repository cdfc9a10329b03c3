"""The driver's Ray session: connect (or fail fast), and keep Ray's own output off the terminal.

Trial failures, Ray's warnings and the raylet's worker-count messages go to `RUN/logs/`; the
user sees one progress line per event (see `progress.py`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from automl import paths, ray_internals, storage
from automl.errors import AutomlError, root_cause

# Train V2 polls its workers every 2 s by default; trials are short, so poll faster.
# RAY_AIR_NEW_OUTPUT=0 with verbose=0: Tune prints nothing; ProgressPrinter reports instead.
_RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_AIR_NEW_OUTPUT": "0"}
# Tune would log every trial failure with Ray's full traceback; the progress line shows the
# root cause and the full text goes to RUN/logs/<trial>.error.txt instead.
_DRIVER_ENV = {"TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}


def init_ray(address: str | None = None) -> dict[str, float]:
    """Connect to `address` (a cluster) or start an embedded local Ray; return its resources.

    A cluster address is probed first: `ray.init` on an unreachable address retries for
    minutes, printing C++ warnings, before it gives up.
    """
    if not ray.is_initialized():
        for key, value in {**_DRIVER_ENV, **_RAY_ENV}.items():
            os.environ.setdefault(key, value)
        if address is None and os.environ.get("RAY_ADDRESS"):
            # A driver started by `ray job submit` (Ray sets RAY_ADDRESS for it) runs on the
            # job's cluster, as Ray's docs have it; a second, embedded Ray inside the job
            # could not find the job's working_dir package.
            address = "auto"
        if address is None:
            use_own_token()
        else:
            _probe_address(address)
        # Ray reads its auth settings once, at import: see them as they are now (an earlier
        # embedded Ray of this process turned token mode on; this cluster may not use it).
        ray_internals.reload_auth_settings()
        _route_raylet_messages()
        try:
            ray.init(
                # "local": always a new embedded instance; None would attach to a cluster
                # that `ray start` left on this machine.
                address=address or "local",
                include_dashboard=address is None,  # needed: stopped trials free their groups
                dashboard_host="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": dict(_RAY_ENV)},
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AutomlError(f"--address {address}: cannot connect to Ray: "
                              f"{root_cause(exc)}") from None
    return {k: float(v) for k, v in ray.cluster_resources().items()}


TOKEN_FILE = storage.CACHE_ROOT / "ray_auth_token"
"""The embedded Ray's token: readable by this user only, never inside a run dir."""


def use_own_token() -> None:
    """Token authentication for the embedded Ray: Ray 2.60 binds its GCS and raylet to every
    interface (no bind option), so without a token anyone who reaches a port — on the
    network, or another user of this machine — could run code as this user. Ray's processes
    inherit these variables; a token the user configured (RAY_AUTH_TOKEN or
    RAY_AUTH_TOKEN_PATH) is used as it is."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(_private_token())


def _private_token() -> Path:
    """This user's token file for the embedded Ray (made on first use, mode 0600)."""
    if not TOKEN_FILE.is_file():
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another search made it just now
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    if TOKEN_FILE.stat().st_mode & 0o077:
        raise AutomlError(f"{TOKEN_FILE}: Ray's token file is readable by other users; "
                          f"make it private (chmod 600 {TOKEN_FILE}) or delete it")
    return TOKEN_FILE


def is_embedded(address: str | None) -> bool:
    """True when this process started (or will start) its own local Ray rather than joining
    a cluster (`--address`, or RAY_ADDRESS as set by `ray job submit`)."""
    return address in (None, "local") and not (address is None and os.environ.get("RAY_ADDRESS"))


def warn_if_not_shared(location: str, address: str | None, log: Any) -> None:
    """On a cluster, a run dir given as a local path must be a shared file system: every node
    writes its trials' checkpoints there (Ray fails the trial at its first checkpoint when a
    node cannot). Say so before the search starts."""
    if paths.is_remote(location):
        return
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1 or not is_embedded(address):
        log(f"note: run dir {location} is a local path; on a cluster it must be a shared file "
            "system mounted at the same path on every node (NFS), or pass --storage "
            "s3://bucket/prefix (or gs://...)")


def _probe_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, with a hint, when nothing listens at a `HOST:PORT` / `ray://` address."""
    if address in ("auto", "local"):
        return  # Ray itself answers at once when no local cluster runs
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host:
        host, port = target, "10001" if address.startswith("ray://") else "6379"
    if not port.isdigit():
        raise AutomlError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        raise AutomlError(
            f"--address {address}: no Ray cluster answers at {host}:{port} ({exc.strerror or exc})"
            "; start one with `ray start --head` (port 6379; Ray Client on 10001), check the "
            "address, or leave --address out to run on an embedded local Ray"
        ) from None


# Ray Train V2 runs about eight actor processes per trial (the Tune trial actor, its report
# queue, TrainController, PlacementGroupCleaner, SynchronizationActor, DatasetManager,
# PreemptionWatcher, and the training workers). Two concurrent trials on a 2-CPU node pass the
# raylet's "4 x CPUs" threshold, and it prints "(raylet) WARNING: N PYTHON worker processes
# have been started" on the driver's terminal. The processes are expected and exit with their
# trial (not a leak), so these lines go to the run's ray.log; other raylet messages still
# reach the terminal. Ray prints them from a thread of its own, through this private function.
_BENIGN_RAYLET = ("worker processes have been started",)
_raylet_log: list[Path] = []


def _route_raylet_messages() -> None:
    worker = ray_internals.driver_print_module()
    if worker is None:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_automl", False):
        return

    def route(data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = list(data.get("lines", []))
        if data.get("pid") == "raylet" and _raylet_log:
            with _raylet_log[-1].open("a") as log:
                log.writelines(f"(raylet) {line}\n" for line in lines)
            lines = [ln for ln in lines if not any(b in ln for b in _BENIGN_RAYLET)]
            if not lines:
                return
        original({**data, "lines": lines}, ignore_prefix)

    route._automl = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = route  # type: ignore[attr-defined]


@contextmanager
def ray_logs_to(path: Path) -> Iterator[None]:
    """Send Ray's Python log output (trial failures, warnings) and the raylet's benign worker
    count warnings to `path`, not the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _raylet_log.append(path)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)  # Ray Data logs per-operator metrics at DEBUG
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved: dict[logging.Logger, list[logging.Handler]] = {}
    names = ["ray", *(n for n in logging.root.manager.loggerDict if n.startswith("ray."))]
    for name in names:
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers if type(h) is not logging.FileHandler
                   and isinstance(h, logging.StreamHandler)]
        if streams or name == "ray":
            saved[logger] = list(logger.handlers)
            logger.handlers = [h for h in logger.handlers if h not in streams]
            if name == "ray" or not logger.propagate:
                logger.addHandler(handler)
    try:
        yield
    finally:
        _raylet_log.remove(path)
        for logger, handlers in saved.items():
            logger.handlers = handlers
        handler.close()
