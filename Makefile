# The two commands the README leads with: `make reproduce` and `make test`.
# Each creates the virtual environment it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision as this project's machines have them on disk; override on other machines,
# e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PROFILE ?= demo
DATA ?=
DEVICE ?= cpu
PYTEST_ARGS ?=

.PHONY: reproduce test lint format lab bench venv clean-results

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(BIN)/.installed

## The main job: notebooks 01-06 through papermill on the built-in mini-CLEVR (demo profile).
reproduce: $(BIN)/.installed
	$(BIN)/qgmrn reproduce --profile $(PROFILE) --device $(DEVICE) $(if $(DATA),--data $(DATA),)

## Lint, unit tests, notebooks under nbval (smoke profile).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lab: $(BIN)/.installed
	$(BIN)/jupyter lab notebooks/

bench: $(BIN)/.installed
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done
