"""The prepared-data cache's own checks: a variant is used only when its manifest proves it
whole, and is written under a name of its writer's own before it is renamed into place.

A variant's manifest lists every shard with its rows and size, plus a checksum of that list;
a shard missing, truncated or added, rows that do not add up, or a manifest that is empty,
cut off or edited, makes the variant damaged: it is prepared again, with a one-line notice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from automl import paths, storage

MANIFEST = "manifest.json"


def verified_manifest(directory: str) -> dict[str, Any] | None:
    """The manifest of the prepared variant in `directory` when it and its shards check
    out; None when there is none or it is damaged (then with a notice on stderr)."""
    path = storage.join(directory, MANIFEST)
    if not storage.is_file(path):
        return None
    try:
        raw = json.loads(storage.read_text(path))
        problem = _problem(directory, raw)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        problem = f"unreadable manifest ({type(exc).__name__})"
    if problem:
        print(f"note: prepared data in {directory} is damaged ({problem}); preparing it again",
              file=sys.stderr)
        return None
    return dict(raw)


def _problem(directory: str, manifest: dict[str, Any]) -> str | None:
    """What is wrong with a prepared variant on disk, or None."""
    shards = manifest.get("shards")
    if not isinstance(shards, dict):
        return "no shard list (made by an older automl)"
    if manifest.get("checksum") != checksum(shards):
        return "manifest checksum mismatch"
    for split, expected_rows in (("train", manifest["train_rows"]),
                                 ("val", manifest["val_rows"])):
        listed = {s["file"]: s for s in shards.get(split, [])}
        fs, folder = storage.filesystem(storage.join(directory, split))
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        found = {i.base_name: i.size for i in infos if i.base_name.endswith(".parquet")}
        if set(found) != set(listed):
            return f"{split}: {len(found)} shard file(s), the manifest lists {len(listed)}"
        if any(found[name] != shard["bytes"] for name, shard in listed.items()):
            return f"{split}: a shard's size differs from the manifest"
        if sum(s["rows"] for s in listed.values()) != expected_rows:
            return f"{split}: shard rows do not add up to {expected_rows}"
    return None


def checksum(shards: dict[str, Any]) -> str:
    """The manifest's checksum of its shard list."""
    return hashlib.sha256(json.dumps(shards, sort_keys=True).encode()).hexdigest()


def staging_name(directory: str) -> str:
    """Where this process writes a cache folder before it is renamed into place. Object
    stores cannot rename folders: there it is written in place (an unfinished earlier
    attempt removed first; two searches at once both write the same content)."""
    if paths.is_remote(directory):
        storage.remove(directory)
        return directory
    return f"{directory}.staging-{os.getpid()}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def discarded_on_error(staging: str, directory: str) -> Iterator[None]:
    """A staging folder whose writer failed is removed, never left in the cache."""
    try:
        yield
    except BaseException:
        if staging != directory:
            storage.remove(staging)
        raise


def publish(staging: str, directory: str) -> bool:
    """Move a finished staging folder into place; False when another search put the same
    content there first (ours is dropped; the caller reads theirs)."""
    if staging == directory:
        return True
    if storage.exists(directory) and verified_manifest(directory) is None \
            and not storage.is_file(storage.join(directory, "DONE")):
        storage.remove(directory)  # damaged or unfinished: automl's own cache folder
    try:
        os.rename(staging, directory)
    except OSError:
        storage.remove(staging)
        return False
    return True


