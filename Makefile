# adaptflow: `make demo` sets everything up and runs the pipeline; `make test` runs the tests.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# stage commands (`python stages/...`) and dvc resolve to the project's virtual environment
export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test lint flow serve compare bench bench-rank bench-shifts bench-throughput clean

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

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

flow: install  ## the same pipeline through the Prefect flow (ephemeral Prefect)
	$(BIN)/python flows/pipeline.py

serve: install  ## serve the flow on its nightly schedule (needs a Prefect server, see README)
	$(BIN)/python flows/pipeline.py --serve

compare: install  ## every method as one DVC experiment on your data, ranked without labels
	$(BIN)/python -m adaptflow.sweep

bench: install  ## every method on the demo over 3 seeds (mean ± std), without DVC
	$(BIN)/python bench/methods.py

bench-rank: install  ## transferability estimators vs target accuracy on the demo (Kendall's tau)
	dvc repro prepare
	$(BIN)/python -m adaptflow.bench rank

bench-shifts: install  ## every method on 4 hard shifts x 3 seeds, label-free rules' regret (README)
	OMP_NUM_THREADS=1 $(BIN)/python -m adaptflow.bench shifts
	$(BIN)/python bench/render_shifts.py

bench-throughput: install  ## img/s of the adapt loop vs plain PyTorch (CPU: demo's small CNN)
	$(BIN)/python -m adaptflow.bench throughput --method source_only
	$(BIN)/python -m adaptflow.bench throughput --method dann

clean:  ## remove pipeline outputs and scratch state (not the venv)
	rm -rf data/demo data/cache data/manifest.csv models metrics plots reports .adaptflow
