# Two commands matter: `make up` and `make test`. Both build the virtualenv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv up test lint typecheck unit bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV) 2>/dev/null || { apt-get update && apt-get install -y python3-venv python3-dev && $(PY) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

up: venv
	$(BIN)/atoll engine bench --quick

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q

test: lint typecheck unit

bench: venv
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
