# invrep: `make demo` sets everything up and restores noisy sample photos with the bundled weights;
# `make test` sets everything up and runs the test suite. Both work from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0: on this project's machines a CPU build is on disk; elsewhere pip takes it from PyPI.
# Override for another build, e.g. `make TORCH_SPEC='torch==2.13.0+cu128' ...`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-all lint bench clean

$(BIN)/invrep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/invrep

demo: setup
	$(BIN)/invrep demo --out demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/invrep bench --sigma 15,25,50

clean:
	rm -rf demo .pytest_cache .ruff_cache
