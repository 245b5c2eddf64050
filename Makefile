# make help: list the targets. Set-up is automatic: any target that needs the environment builds it.
PYTHON ?= python3
VENV ?= .venv
# Installed before the package. On the reference machine this is a CPU wheel on disk.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test test-slow test-lowest bench notebook lint format clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create the virtual environment and install torch, then the package (editable, with dev extras)

train: $(STAMP) ## Train the default model (en->de Multi30k); extra overrides via ARGS="model.hidden_size=256 ..."
	$(BIN)/python -m seq2seq_lit.train $(ARGS)

test: $(STAMP) ## Run the test suite, except the tests marked slow
	$(BIN)/python -m pytest $(ARGS)

test-slow: $(STAMP) ## Run the tests marked slow (end-to-end runs of half a minute or more)
	$(BIN)/python -m pytest -m slow $(ARGS)

LOWEST := .venv-lowest
test-lowest: ## Every dependency at its pyproject.toml floor (torch: TORCH) in .venv-lowest, then the tests
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install -q --upgrade pip
	$(LOWEST)/bin/pip install -q "$(TORCH)"
	$(PYTHON) -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
	print('\n'.join(re.sub(r'>=([0-9.]+).*', r'==\1', d) for d in deps if re.split('[<>=]', d)[0] != 'torch'))" \
	> $(LOWEST)/constraints.txt
	$(LOWEST)/bin/pip install -q -c $(LOWEST)/constraints.txt -e . pytest
	$(LOWEST)/bin/python -m pytest --ignore tests/test_notebook.py --ignore tests/test_sweeps.py \
	--deselect "tests/test_config.py::test_logger_options_instantiate[tensorboard]" $(ARGS)

bench: $(STAMP) ## Benchmark training and decoding speed (ARGS="--quick --json bench.json"); see BENCHMARKS.md
	$(BIN)/python benchmarks/bench.py $(ARGS)

notebook: $(STAMP) ## Re-run notebooks/01_walkthrough.ipynb in place, storing its outputs (MULTI30K=path to the data)
	cd notebooks && ../$(BIN)/python -c "import nbformat; from nbclient import NotebookClient; \
	nb = nbformat.read('01_walkthrough.ipynb', as_version=4); \
	NotebookClient(nb, timeout=1800, kernel_name='python3').execute(); \
	nbformat.write(nb, '01_walkthrough.ipynb')"

lint: $(STAMP) ## ruff lint and format check, mypy type check of src/
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean: ## Remove build artefacts and caches (keeps logs/, data/ and the venv)
	rm -rf build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
