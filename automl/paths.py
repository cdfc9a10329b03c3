"""Every location a user types (run dirs, data, weights, exports) goes through `resolve`.

Ray and pyarrow reject relative paths ("URI has empty scheme") and do not expand `~`, and a
relative path means something else on another node. So a location is resolved once, on the
driver, against the current directory: local paths become absolute, `file://` URIs become
local paths, and remote URIs (`s3://`, `gs://`, ...) are kept as they are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from automl.errors import AutomlError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az", "memory")


def is_uri(location: str | Path) -> bool:
    """True for `scheme://...` locations (including `file://`)."""
    return bool(_SCHEME.match(str(location)))


def is_remote(location: str | Path) -> bool:
    """True for URIs that do not name a local file (`s3://`, `gs://`, ...)."""
    match = _SCHEME.match(str(location))
    return match is not None and match.group(1).lower() != "file"


def resolve(location: str | Path, what: str = "path") -> str:
    """An absolute local path (`~` expanded, relative to the current directory, `file://`
    unwrapped) or a remote URI kept as is. `what` names the location in error messages."""
    text = str(location).strip()
    if not text:
        raise AutomlError(f"{what}: empty path; give a directory, a file or a URI")
    match = _SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "file":
            parsed = urlparse(text)
            if parsed.netloc not in ("", "localhost"):
                raise AutomlError(f"{what}: {text!r} names host {parsed.netloc!r}; a file:// "
                                  "URI must be file:///absolute/path")
            return str(Path(unquote(parsed.path)))
        if scheme not in REMOTE_SCHEMES:
            known = ", ".join(f"{s}://" for s in REMOTE_SCHEMES)
            raise AutomlError(f"{what}: unsupported URI scheme {scheme!r} in {text!r}; use a "
                              f"local path, file:// or one of {known}")
        return text
    return os.path.abspath(os.path.expanduser(text))


def local_path(location: str | Path, what: str = "path") -> Path:
    """`resolve` for places that must be on this machine's file system (e.g. an image folder
    read by the driver); a remote URI is a clear error."""
    resolved = resolve(location, what)
    if is_remote(resolved):
        raise AutomlError(f"{what}: {resolved!r} is remote; this needs a local or shared-file-"
                          "system path (copy the data locally, or mount the bucket)")
    return Path(resolved)



def safe_relative(rel: str) -> str:
    """`rel` as a relative path that stays inside its root (no `..`, not absolute): object
    keys and manifest entries are data, never a way out of the folder they are written to."""
    text = rel.replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    if not parts or text.startswith("/") or ".." in parts:
        raise AutomlError(f"refusing path {rel!r}: it would leave its folder")
    return "/".join(parts)
