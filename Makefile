# adaptflow: `make demo` sets everything up and runs the pipeline; `make test` runs the tests.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# stage commands (`python stages/...`) and dvc resolve to the project's virtual environment
export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test lint flow serve compare bench bench-rank bench-throughput clean
.PHONY: help results status predict bench-predict ci-report

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "Installing into $(VENV) (torch, DVC, Prefect, great-expectations, ONNX; ~2 min)..."
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e '.[dev]'
	@touch $@

demo: install  ## run the whole pipeline on the embedded demo (MNIST -> UCI digits)
	dvc repro
	@sed -n '1,8p' reports/evaluate.md

test: install  ## the test suite (unit + end-to-end), on CPU
	$(BIN)/python -m pytest

lint: install  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

flow: install  ## the same pipeline through the Prefect flow (ephemeral Prefect)
	$(BIN)/python flows/pipeline.py

serve: install  ## serve the flow on its nightly schedule (needs a Prefect server, see README)
	$(BIN)/python flows/pipeline.py --serve

compare: install  ## every adaptation method as a DVC experiment on your data: one table
	$(BIN)/python -m adaptflow.sweep

bench: install  ## every method on the demo over 3 seeds (mean ± std), without DVC
	$(BIN)/python bench/methods.py

bench-rank: install  ## transferability estimators vs target accuracy on the demo (Kendall's tau)
	dvc repro prepare
	$(BIN)/python -m adaptflow.bench rank

bench-throughput: install  ## img/s of the adapt loop vs plain PyTorch (CPU: demo's small CNN)
	$(BIN)/python -m adaptflow.bench throughput --method source_only
	$(BIN)/python -m adaptflow.bench throughput --method dann

clean:  ## remove pipeline outputs and scratch state (not the venv)
	rm -rf data/demo data/cache data/manifest.csv models metrics plots reports .adaptflow

# --- using the model and reading results (`adaptflow <command>`; `adaptflow --help`) ---

help:  ## list the make targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

results: install  ## the headline figures of every stage, one table (adaptflow results)
	$(BIN)/python -m adaptflow results

status: install  ## which stages `dvc repro` would run, and why (adaptflow status)
	$(BIN)/python -m adaptflow status

IMAGES ?= $(shell $(BIN)/python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['data']['target'])")/test
predict: install  ## classify IMAGES (default: the target test split) with models/model.onnx
	$(BIN)/python -m adaptflow predict $(IMAGES) -o predictions.csv

bench-predict: install  ## img/s of adaptflow predict on CPU (decode + onnxruntime)
	$(BIN)/python -m adaptflow.bench predict

BASE ?= HEAD
ci-report: install  ## the pull-request report (metrics and params diff, plots) vs BASE=<rev>
	$(BIN)/python -m adaptflow.ci_report --base $(BASE) --out ci-report
