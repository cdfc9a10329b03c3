# The two commands of the README: `make demo` (set up + run the demo search), `make test`.
.PHONY: setup demo demo-text test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/automl search search_spaces/demo_vision.yaml --run-dir runs/demo_vision

lint: setup
	.venv/bin/ruff check automl tests bench
	.venv/bin/mypy

test: lint
	.venv/bin/pytest -q

bench: setup
	.venv/bin/python bench/overhead.py

demo-text: setup
	.venv/bin/automl search search_spaces/demo_text.yaml --run-dir runs/demo_text
