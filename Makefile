PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
DEMO_OUT ?= demo_output
ONLY ?=

.PHONY: install test lint format demo bench clean

install:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"

test:
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q tests

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo:
	HF_HUB_OFFLINE=1 $(BIN)/sam-mito demo --out $(DEMO_OUT) --overwrite $(if $(DATA),--data $(DATA),)

bench:
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_benchmarks.py --out BENCHMARKS.md --json bench.json $(foreach group,$(ONLY),--only $(group))

clean:
	rm -rf $(DEMO_OUT) build dist *.egg-info .pytest_cache
