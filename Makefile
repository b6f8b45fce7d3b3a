# The README's two commands. Each sets itself up: a .venv with the package installed.
#   make demo   both training phases, export, evaluation and a live run on synthetic data
#   make test   lint, format check and the test suite (slow tests: make test-slow)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= outputs/demo
# Extra demo options and Hydra overrides for every demo training run, e.g. DEMO_ARGS=--imagenet
DEMO_ARGS ?=

.PHONY: demo test test-slow lint bench clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# The Optuna sweep test needs the optuna extra.
$(VENV)/.installed-extras: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[dev,optuna]'
	touch $@

test-slow: $(VENV)/.installed-extras
	$(BIN)/pytest -m slow

bench: $(VENV)/.installed
	$(BIN)/python -m agegender.bench all --json outputs/bench.json

demo: $(VENV)/.installed
	$(BIN)/python -m agegender.demo --out $(DEMO_OUT) $(DEMO_ARGS)

clean-cache:
	rm -rf .cache/agegender
