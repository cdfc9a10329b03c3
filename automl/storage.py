"""Run storage: one set of file operations for local / NFS paths and pyarrow-filesystem URIs.

A location is what `paths.resolve` returns: an absolute local path or a remote URI
(`s3://bucket/key`, `gs://...`). Everything a search keeps (trial checkpoints, the Tune
experiment, prepared shards, the board and the export) lives under locations, so a run on
`s3://` is read back, exported from and resumed exactly like one in a local folder.

S3-compatible servers (MinIO, moto, Ceph) are reached with pyarrow's own settings: the
`AWS_ENDPOINT_URL` environment variable (it must be set on every node) or URI query options
(`s3://bucket/run?endpoint_override=host:9000&scheme=http`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from automl import paths
from automl.errors import AutomlError

CACHE_ROOT = Path(os.environ.get("AUTOML_CACHE", "~/.cache/automl")).expanduser()
"""Local copies of remote files (weights, downloaded exports) and of remote runs' driver files."""


WRITE_CHECK = ".automl-write-check"
"""The empty file `check_writable` writes and deletes."""


def join(location: str, *parts: str) -> str:
    """`location/part/...` for paths and URIs alike (query options stay at the end)."""
    base, query = _split_query(location)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)]) + query


def parent(location: str) -> str:
    """The folder holding `location`."""
    base, query = _split_query(location)
    return base.rstrip("/").rsplit("/", 1)[0] + query


def name(location: str) -> str:
    """The last component of `location`."""
    return _split_query(location)[0].rstrip("/").rsplit("/", 1)[-1]


def _split_query(location: str) -> tuple[str, str]:
    if paths.is_remote(location) and "?" in location:
        base, _, query = location.partition("?")
        return base, "?" + query
    return location, ""


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path on it; AutomlError when it cannot be reached."""
    if not paths.is_remote(location):
        return pafs.LocalFileSystem(), location
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for bad URIs and credentials
        raise AutomlError(f"cannot open {location!r}: {exc}") from None


def check_writable(location: str, what: str) -> None:
    """Write and delete a marker file, so a missing bucket, wrong credentials or a read-only
    folder fail before Ray starts, with a hint, instead of at the first checkpoint."""
    marker = join(location, WRITE_CHECK)
    try:
        write_bytes(marker, b"")
        remove(marker)
    except OSError as exc:
        hint = ("check the bucket exists and the credentials (AWS_* variables, instance role; "
                "AWS_ENDPOINT_URL for S3-compatible servers)" if paths.is_remote(location)
                else "check the folder's permissions")
        raise AutomlError(f"{what} {location}: cannot write there: {exc}; {hint}") from None


def to_location(fs_path: str, like: str) -> str:
    """A location for `fs_path` on the same filesystem as `like` (Ray reports checkpoint
    paths without the URI scheme)."""
    if not paths.is_remote(like):
        return fs_path
    scheme = like.split("://", 1)[0]
    return f"{scheme}://{fs_path.lstrip('/')}{_split_query(like)[1]}"


def exists(location: str) -> bool:
    """True when a file or folder is there."""
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(location: str) -> bool:
    """True when a file is there."""
    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_bytes(location: str) -> bytes:
    """A whole (small) file."""
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return bytes(f.read())


def read_text(location: str) -> str:
    """A whole (small) text file."""
    return read_bytes(location).decode("utf-8")


def write_bytes(location: str, data: bytes) -> None:
    """Write a file, creating its folder."""
    fs, path = filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text(location: str, text: str) -> None:
    """Write a text file, creating its folder."""
    write_bytes(location, text.encode("utf-8"))


def move(source: str, target: str) -> None:
    """Rename a file: atomic on a local filesystem, so readers never see half of it (an
    object store's upload is already all-or-nothing)."""
    fs, path = filesystem(source)
    fs.move(path, filesystem(target)[1])


def make_dirs(location: str) -> None:
    """Create a folder and its parents (a no-op on object stores without folders)."""
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)


def list_files(location: str, suffix: str = "") -> list[str]:
    """Sorted locations of the files directly in a folder (empty if it does not exist)."""
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    found = [i.base_name for i in infos if i.type == pafs.FileType.File
             and i.base_name.endswith(suffix)]
    return [join(location, n) for n in sorted(found)]


def remove(location: str) -> None:
    """Delete a folder and everything under it (missing is fine). Only for folders automl
    made itself (its caches' staging and unfinished parts): never a user-given location."""
    fs, path = filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def remove_file(location: str) -> None:
    """Delete one file (missing is fine); never a folder."""
    fs, path = filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def usage(location: str) -> int:
    """Bytes of all files under a folder."""
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def upload(local: Path, location: str) -> None:
    """Copy a local file or folder to `location` (replacing files of the same name)."""
    fs, path = filesystem(location)
    if local.is_dir():
        fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def download(location: str, local: Path) -> Path:
    """Copy a remote file or folder (with its sub-folders) to `local`; returns `local`."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise AutomlError(f"{location}: not found")
    if info.type == pafs.FileType.File:
        files = [(path, local)]
    else:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        # A key with `..` in it (a crafted bucket) must not write outside `local`.
        files = [(f.path, local / paths.safe_relative(f.path[len(path):].lstrip("/")))
                 for f in found if f.type == pafs.FileType.File]
    for source, target in files:
        target.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(source, str(target), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
    return local


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local path for `location`: itself when local, else a temporary download."""
    if not paths.is_remote(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="automl-") as tmp:
        yield download(location, Path(tmp) / name(location))


@functools.lru_cache(maxsize=32)
def cached_copy(location: str) -> Path:
    """A local path for `location`, downloaded once per machine into the automl cache (for
    weights on shared storage that every worker of a cluster reads)."""
    if not paths.is_remote(location):
        if not os.path.exists(location):
            raise AutomlError(
                f"{location}: not found on node {socket.gethostname()}; on a cluster, put "
                "weights on a file system every node mounts at the same path, or on storage "
                "(file:s3://bucket/weights.safetensors)")
        return Path(location)
    fs, path = filesystem(location)
    info = fs.get_file_info(path)  # an object replaced under the same name is fetched anew
    key = hashlib.sha1(f"{location}|{info.size}|{info.mtime_ns}".encode()).hexdigest()[:16]
    target = CACHE_ROOT / "remote" / key / name(location)
    if not target.exists():
        staging = target.with_name(target.name + f".{os.getpid()}.part")
        download(location, staging)
        os.replace(staging, target)
    return target


def mirror_dir(location: str) -> Path:
    """The driver's local working folder for a remote run (logs, board, export before upload)."""
    key = hashlib.sha1(location.encode()).hexdigest()[:12]
    return CACHE_ROOT / "runs" / f"{name(location)}-{key}"
