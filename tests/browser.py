"""Open an HTML file in a real headless browser (Debian's chromium, installed by
scripts/setup.sh): the DOM after its scripts ran, console errors, and a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
          "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    """The browser binary; a test fails (not skips) without it: setup installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: run `make setup` (it installs Debian's chromium)"
    return found


def open_page(page: Path, screenshot: Path) -> tuple[dict[str, str], list[str]]:
    """(data-* attributes of <body> after the page's scripts ran, console error lines)."""
    url = page.resolve().as_uri()
    dom = subprocess.run([chromium(), *_FLAGS, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120, check=True)
    shot = subprocess.run([chromium(), *_FLAGS, f"--screenshot={screenshot}",
                           "--window-size=1400,2600", url], capture_output=True, text=True,
                          timeout=120, check=True)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    attributes = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1) if body else ""))
    errors = [line for line in (dom.stderr + shot.stderr).splitlines()
              if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    return attributes, errors
