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

.PHONY: reproduce test test-browser lint format lab bench venv clean-results

# JupyterLab defaults for a student's first start: no "Jupyter news" prompt, no update check,
# the notebook's kernel started without a dialog (written into the venv's JupyterLab settings)
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
LAB_SETTINGS := {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}, "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": true}}
# as root (the usual case in a container) jupyter refuses to start without --allow-root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[notebooks,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(BIN)/.installed

## The main job: notebooks 01-06, then 00, through papermill on the built-in mini-CLEVR (demo profile).
reproduce: $(BIN)/.installed
	$(BIN)/qgmrn reproduce --profile $(PROFILE) --device $(DEVICE) $(if $(DATA),--data-dir $(DATA),)

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

$(LAB_OVERRIDES): $(BIN)/.installed
	mkdir -p $(dir $@)
	echo '$(LAB_SETTINGS)' > $@

lab: $(BIN)/.installed $(LAB_OVERRIDES)
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/

## JupyterLab in a real headless Chromium (tests/browser): finds a browser ($$QGMRN_BROWSER, a
## chromium on the PATH, or Debian's package installed here when root) and playwright.
test-browser: $(BIN)/.installed $(LAB_OVERRIDES)
	@if [ -z "$$QGMRN_BROWSER" ] && ! command -v chromium >/dev/null && \
	    ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium (apt-get)"; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); \
	  else \
	    echo "no Chromium: install one (e.g. apt-get install chromium) or set QGMRN_BROWSER"; \
	    exit 1; \
	  fi; \
	fi
	$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install --quiet playwright
	$(BIN)/pytest -m browser tests/browser $(PYTEST_ARGS)

bench: $(BIN)/.installed
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done
