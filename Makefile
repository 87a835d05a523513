PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
DEMO_OUT ?= demo_output
ONLY ?=

.PHONY: install test test-fast test-min test-vision lint format docs demo bench clean

install:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"

OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

test:
	$(OFFLINE) $(BIN)/python -m pytest -q -m "not vision" tests

# Day-to-day: everything but the slow tier (pip installs, accelerate launches, benchmark runs).
test-fast:
	$(OFFLINE) $(BIN)/python -m pytest -q -m "not slow and not vision" tests

# The fast tests on the oldest versions setup.cfg allows: a separate venv with each declared floor
# pinned exactly (tests/_floors.py reads them from setup.cfg; torch is the one CPU build on disk),
# checked against pip freeze. The dev tools float.
VENV_MIN ?= .venv-min
MIN_BIN := $(VENV_MIN)/bin
TORCH_PIN := torch==2.13.0

test-min:
	$(PY) -m venv $(VENV_MIN)
	$(MIN_BIN)/pip install --upgrade pip
	$(MIN_BIN)/pip install $(TORCH_PIN)
	$(PY) tests/_floors.py constraints --override $(TORCH_PIN) > $(VENV_MIN)/floors.txt
	$(MIN_BIN)/pip install -e ".[dev]" --constraint $(VENV_MIN)/floors.txt
	$(MIN_BIN)/pip freeze | $(PY) tests/_floors.py check --override $(TORCH_PIN)
	$(OFFLINE) $(MIN_BIN)/python -m pytest -q -m "not slow and not vision" tests

# The tests marked `vision` (they need torchvision and timm: stock SAM 2.1 preprocessing, EdgeTAM)
# and the fast tier again, in a separate venv on the newer torch with torchvision (both on disk).
VENV_VISION ?= .venv-vision
VISION_BIN := $(VENV_VISION)/bin
VISION_PINS := torch==2.14.1 torchvision==0.29.1

test-vision:
	$(PY) -m venv $(VENV_VISION)
	$(VISION_BIN)/pip install --upgrade pip
	$(VISION_BIN)/pip install $(VISION_PINS)
	$(VISION_BIN)/pip install timm
	$(VISION_BIN)/pip install -e ".[dev]" $(VISION_PINS)
	$(OFFLINE) $(VISION_BIN)/python -m pytest -q -m "vision or not slow" tests

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

docs:
	$(BIN)/mkdocs build --strict

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo:
	HF_HUB_OFFLINE=1 $(BIN)/sam-mito demo --out $(DEMO_OUT) --overwrite $(if $(DATA),--data $(DATA),)

bench:
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_benchmarks.py --out BENCHMARKS.md --json bench.json $(foreach group,$(ONLY),--only $(group))

clean:
	rm -rf $(DEMO_OUT) site build dist *.egg-info .pytest_cache
