# The two commands of the README: `make demo` (set up + run the demo search), `make test`.
.PHONY: setup demo demo-text test lint unit integration smoke bench

setup:
	@bash scripts/setup.sh

# A search never reuses a run dir: a second `make demo` runs beside the first.
demo: setup
	@run=runs/demo_vision; [ ! -e $$run ] || run=$$run-$$(date +%Y%m%d-%H%M%S); \
	echo ".venv/bin/automl search search_spaces/demo_vision.yaml --run-dir $$run"; \
	.venv/bin/automl search search_spaces/demo_vision.yaml --run-dir $$run

lint: setup
	.venv/bin/ruff check automl tests bench
	.venv/bin/mypy

# Unit tier: no Ray (a test that starts Ray without the integration marker fails), ≈ 3 min.
unit: setup
	.venv/bin/pytest -q -m "not integration" --durations=5

# Integration tier: real searches on local Ray, multi-node loopback clusters, S3 (moto).
integration: setup
	.venv/bin/pytest -q -m integration --durations=12

# The demo as a new user runs it, shortened: catches what tests with absolute paths miss.
smoke: setup
	bash scripts/smoke.sh

test: lint unit integration smoke

bench: setup
	.venv/bin/python bench/overhead.py

demo-text: setup
	@run=runs/demo_text; [ ! -e $$run ] || run=$$run-$$(date +%Y%m%d-%H%M%S); \
	echo ".venv/bin/automl search search_spaces/demo_text.yaml --run-dir $$run"; \
	.venv/bin/automl search search_spaces/demo_text.yaml --run-dir $$run
