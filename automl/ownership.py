"""What automl owns, and the only ways it deletes or replaces files.

Tools people trust never delete a folder because it "looks like" theirs: they keep a marker
of what they wrote and refuse everything else. automl does the same:

- a run dir carries `.automl-run.json` (written when its search starts); nothing else is a
  run dir, and only a run dir with that marker is resumed;
- an export is replaced only when every file in it is named by its own `manifest.json`,
  and then only those files are removed;
- every file automl rewrites goes to a temporary name first and is renamed into place, so a
  kill or a full disk leaves the old file or the new one, never half of one.

No Ray or torch import here: every command (export, resume, search) checks through this
module before it does any work.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path, PurePosixPath
from typing import Any

from automl import paths, storage
from automl.errors import AutomlError
from automl.runs.layout import LEGACY_FILES, LOCK_FILE, RUN_MARKER

RUN_FORMAT = "automl-run/1"
EXPORT_MANIFEST = "manifest.json"
EXPORT_FORMAT_PREFIX = "automl-export/"
_CLAIM_FILES = (RUN_MARKER, LOCK_FILE, storage.WRITE_CHECK)
"""What a search that stopped before it began leaves: the folder is still free."""


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `path` whole: a temporary file beside it, flushed, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with tmp.open("xb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def mark_run(local: Path, location: str) -> None:
    """Write the run marker (locally; also at `location` when the run is remote)."""
    text = json.dumps({"format": RUN_FORMAT, "created": time.time(), "location": location})
    write_atomic(local / RUN_MARKER, text)
    if paths.is_remote(location):
        storage.write_text(storage.join(location, RUN_MARKER), text)


def unclaim_untouched(local: Path, location: str, created: bool) -> bool:
    """Undo a claim on a run dir that holds nothing but automl's marker (a search that
    stopped before writing anything: a wrong --address, say), so bad input leaves no empty
    run behind: the marker goes, and the folder too when this process `created` it (an
    empty folder the user made stays). Anything else in it, and all stays. True when
    undone."""
    if not local.is_dir() or {p.name for p in local.iterdir()} != {RUN_MARKER}:
        return False
    if paths.is_remote(location):
        storage.remove_file(storage.join(location, RUN_MARKER))
    (local / RUN_MARKER).unlink()
    if created:
        local.rmdir()
    return True


def is_marked_run(location: str) -> bool:
    """True when `location` holds automl's run marker."""
    return _is_file(storage.join(location, RUN_MARKER))


def looks_like_run(location: str) -> bool:
    """True for a run dir of any automl version (the marker, or an older run's files)."""
    return is_marked_run(location) or any(
        _is_file(storage.join(location, name)) for name in LEGACY_FILES)


def check_new_run_dir(location: str) -> None:
    """A new search may start only in a missing or empty folder: never in another search's
    run dir (resume that one) nor among a user's files."""
    if _is_file(location):
        raise AutomlError(f"--run-dir {location} is an existing file; give a folder (new or "
                          "empty)")
    entries = [e for e in _entries(location) if e not in _CLAIM_FILES]
    if not entries:
        return
    if looks_like_run(location):
        raise AutomlError(f"--run-dir {location} already holds a search; continue it with "
                          f"`automl search --resume {location}`, or choose a new --run-dir")
    raise AutomlError(f"--run-dir {location} is not empty and is not an automl run dir "
                      f"(it holds {_sample(entries)}); choose a new or empty folder")


def check_resumable(location: str) -> None:
    """`--resume` trusts a run dir like its own code (Ray unpickles its experiment state):
    only a folder with automl's marker, checked before anything in it is read."""
    if is_marked_run(location):
        return
    if _is_file(storage.join(location, "config.pkl")):
        raise AutomlError(
            f"--resume {location}: this run dir was made by an older automl (config.pkl, no "
            f"{RUN_MARKER}) and cannot be resumed safely; re-run its space in a new run dir: "
            f"automl search {storage.join(location, 'space.yaml')} --run-dir NEW_DIR")
    raise AutomlError(f"--resume {location}: not an automl run dir (no {RUN_MARKER}); pass "
                      "the --run-dir of a search started by automl")


def check_export_target(target: str) -> list[str]:
    """Refuse an export target automl may not write, before any work; return the files of
    an earlier automl export there (the only files a new export may replace).

    Refused: an existing file; a local folder whose parent is missing; a run dir, or a place
    inside one other than its `export*` folders; a non-empty folder (listed recursively,
    also on object storage) holding any file its own export manifest does not name."""
    run_root, inside = _enclosing_run(target)
    if run_root is not None and (not inside or not inside[0].startswith("export")):
        where = "is a run dir" if not inside else f"lies inside run dir {run_root}"
        raise AutomlError(f"--out {target} {where}; export to a new folder outside it, or to "
                          f"{storage.join(run_root, 'export-NAME')}")
    if _is_file(target):
        raise AutomlError(f"--out {target} is an existing file; give a folder (new or empty)")
    _check_parent(target)
    files = _files_under(target)
    if not files:
        return []
    owned = _export_files(target)
    foreign = sorted(set(files) - set(owned or ()) - {EXPORT_MANIFEST})
    if owned is None or foreign:
        what = "exists and is not an automl export" if owned is None else \
            "holds files that are not part of its automl export"
        raise AutomlError(f"--out {target} {what} ({_sample(foreign or files)}); automl only "
                          "replaces its own exports: choose a new or empty folder")
    return [*owned, EXPORT_MANIFEST]


def check_file_target(target: str, what: str = "--out") -> None:
    """A single output file (board, report, predictions): not a folder, in a folder that
    exists (a typo in a path is an error, not a new tree of folders)."""
    if not paths.is_remote(target) and Path(target).is_dir():
        raise AutomlError(f"{what} {target} is a folder; give a file name (e.g. "
                          f"{Path(target) / 'out.csv'})")
    _check_parent(target, what)


def _check_parent(target: str, what: str = "--out") -> None:
    """A local output's folder must exist: a typo in a path is an error, not new folders."""
    parent = Path(target).parent
    if not paths.is_remote(target) and not parent.is_dir():
        raise AutomlError(f"{what} {target}: its folder {parent} does not exist; create it "
                          f"first or choose another {what}")


def remove_files(root: str, files: list[str]) -> None:
    """Delete these files (relative to `root`, as an export manifest names them) and the
    folders they leave empty; nothing else under `root` is touched."""
    for rel in files:
        storage.remove_file(storage.join(root, paths.safe_relative(rel)))
    if not paths.is_remote(root):
        folders = sorted({p for rel in files for p in PurePosixPath(rel).parents
                          if str(p) != "."}, key=lambda p: -len(p.parts))
        for folder in [*(Path(root) / p for p in folders), Path(root)]:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _export_files(target: str) -> list[str] | None:
    """The files an automl export manifest at `target` names (None: no such manifest)."""
    manifest = storage.join(target, EXPORT_MANIFEST)
    if not _is_file(manifest):
        return None
    try:
        raw: Any = json.loads(storage.read_text(manifest))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not str(raw.get("format", "")).startswith(
            EXPORT_FORMAT_PREFIX) or not isinstance(raw.get("files"), dict):
        return None
    return [paths.safe_relative(str(rel)) for rel in raw["files"]]


def _enclosing_run(target: str) -> tuple[str | None, list[str]]:
    """The run dir that is `target` or holds it, and the path from it down to `target`."""
    location, below = target, list[str]()
    while True:
        if looks_like_run(location):
            return location, below
        if _is_root(location):
            return None, []
        below.insert(0, storage.name(location))
        location = storage.parent(location)


def _is_root(location: str) -> bool:
    """A file system's root, or an object store's bucket."""
    if paths.is_remote(location):
        return "/" not in location.split("://", 1)[1].split("?")[0].strip("/")
    return Path(location).parent == Path(location)


def _entries(location: str) -> list[str]:
    return _files_under(location, recursive=False)


def _files_under(location: str, recursive: bool = True) -> list[str]:
    """Relative paths of what is under a folder (files; folders too when not recursive)."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive,
                                               allow_not_found=True))
    base = path.rstrip("/") + "/"
    return sorted(i.path[len(base):] if i.path.startswith(base) else i.base_name
                  for i in infos if not recursive or i.type == pafs.FileType.File)


def _is_file(location: str) -> bool:
    try:
        return storage.is_file(location)
    except (OSError, AutomlError):
        return False


def _sample(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
