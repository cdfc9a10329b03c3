# The two commands of the README: `make demo` (set up + run the demo search), `make test`.
.PHONY: setup demo demo-text test lint unit smoke bench

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

unit: setup
	.venv/bin/pytest -q --durations=12

# The demo as a new user runs it, shortened: catches what tests with absolute paths miss.
smoke: setup
	bash scripts/smoke.sh

test: lint unit smoke

bench: setup
	.venv/bin/python bench/overhead.py

demo-text: setup
	@run=runs/demo_text; [ ! -e $$run ] || run=$$run-$$(date +%Y%m%d-%H%M%S); \
	echo ".venv/bin/automl search search_spaces/demo_text.yaml --run-dir $$run"; \
	.venv/bin/automl search search_spaces/demo_text.yaml --run-dir $$run
