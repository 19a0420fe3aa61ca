# adaptflow: `make demo` sets everything up and runs the pipeline; `make test` runs the tests.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# stage commands (`python stages/...`) and dvc resolve to the project's virtual environment
export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# the local Prefect server of the scheduled path (make prefect-server / deploy / worker / serve)
PREFECT_PORT ?= 4200
PREFECT_API ?= http://127.0.0.1:$(PREFECT_PORT)/api
POOL := adaptflow-local
# `make test` runs test files on this many processes (pytest-xdist; one file stays on one, as the
# e2e scenario shares its workspace), each torch process on one thread unless OMP_NUM_THREADS
# says otherwise: on a 2-core CI machine, 10.5 min instead of 23 on one process with 2 threads
TEST_WORKERS ?= 2

.PHONY: install lock check-params demo test lint docs flow prefect-server deploy worker serve \
	compare bench bench-rank bench-shifts bench-throughput clean
.PHONY: help results status predict bench-predict ci-report

install: $(VENV)/.installed

# constraints.txt (the lock, `make lock`) pins every package the pipeline, the tests and the docs
# use, with its installed size. A fresh .venv gets exactly that set, unresolved (--no-deps),
# by four pips at once over parts of about equal size (adaptflow/entry/locked_install.py):
# one pip unpacks torch's 6 GB on one core at a time, and looks each small package up in turn.
# pip check then proves the set consistent (a lock older than pyproject.toml fails there).
# Bytecode: Python writes it at a module's first import, so only what runs is compiled, once
# (~12 s of the demo's first stages). Where PYTHONDONTWRITEBYTECODE forbids that, every process
# would compile its imports again: then the whole environment is compiled here, on every core
# (~26 s on 2). compileall's non-zero exit is a few files written for newer Pythons (torch's
# py312_intrinsics.py), which pip skips the same way.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "Installing constraints.txt into $(VENV) (torch, DVC, Prefect, great-expectations, ONNX, test tools; ~1 min)..."
	python3 -m venv $(VENV)
	python3 adaptflow/entry/locked_install.py install --python $(BIN)/python --parts 4 constraints.txt
	$(if $(PYTHONDONTWRITEBYTECODE),$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true)
	@touch $@

lock:  ## re-resolve every dependency in a scratch venv and write constraints.txt
	rm -rf .lock-venv
	python3 -m venv .lock-venv
	.lock-venv/bin/python -m pip install -qq --upgrade pip
	.lock-venv/bin/python -m pip install -qq -e '.[dev]'
	{ echo "# pip constraints: the versions the test suite ran on, each with its installed size, by"; \
	  echo "# which make install splits the list. Refresh: make lock"; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | LC_ALL=C sort | \
	  .lock-venv/bin/python adaptflow/entry/locked_install.py annotate; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf .lock-venv

check-params: install  ## check the whole of params.yaml (what every stage checks first)
	$(BIN)/adaptflow check

demo: check-params  ## run the whole pipeline on the embedded demo (MNIST -> UCI digits)
	dvc repro
	@sed -n '1,8p' reports/evaluate.md

test: install  ## the test suite (unit + end-to-end), on CPU; TEST_WORKERS=1: one process
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: install  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install  ## the manual in docs/ as a site (site/), links and anchors checked (--strict)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

flow: install  ## the same pipeline through the Prefect flow, on a private ephemeral Prefect
	$(BIN)/python flows/pipeline.py

prefect-server: install  ## a local Prefect server on 127.0.0.1:$(PREFECT_PORT) (keep it running)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

deploy: install  ## the nightly work-pool deployment of prefect.yaml, on that server
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect work-pool inspect $(POOL) >/dev/null 2>&1 || \
	  PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect work-pool create $(POOL) --type process
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect --no-prompt deploy --all

worker: install  ## a process worker that runs the deployment's scheduled runs (keep it running)
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect worker start --pool $(POOL)

serve: install  ## one process that serves the flow on its nightly schedule (no work pool)
	$(BIN)/python flows/pipeline.py --serve --api-url $(PREFECT_API)

compare: install  ## every method as one DVC experiment on your data, ranked without labels
	$(BIN)/adaptflow compare

bench: install  ## every method on the demo over 3 seeds (mean ± std), without DVC
	dvc repro prepare
	$(BIN)/python -m adaptflow.bench methods

bench-rank: install  ## transferability estimators vs target accuracy on the demo (Kendall's tau)
	dvc repro prepare
	$(BIN)/python -m adaptflow.bench rank

bench-shifts: install  ## every method on 4 hard shifts x 3 seeds, label-free rules' regret
	OMP_NUM_THREADS=1 $(BIN)/python -m adaptflow.bench shifts --json .adaptflow/bench/shifts.json

bench-throughput: install  ## img/s of the adapt loop vs plain PyTorch (CPU: demo's small CNN)
	$(BIN)/python -m adaptflow.bench throughput --method source_only
	$(BIN)/python -m adaptflow.bench throughput --method dann

clean:  ## remove pipeline outputs and scratch state (not the venv)
	rm -rf data/demo data/cache data/manifest.csv models metrics plots reports .adaptflow

# ---- GPU check: prove the CUDA paths on a bare GPU machine; see docs/performance.md ----
# gpu-bundle needs pip and an index (build it here); gpu-check needs only the machine's Python
# with torch, plus the bundle carried along. GPU_PYTHON: that Python; GPU_RESULTS: where
# summary.json, summary.md and the log go (e.g. $OUT on a lent machine).
GPU_PYTHON ?= python3
GPU_BUNDLE ?= dist/gpu-bundle
GPU_RESULTS ?= results/gpu
GPU_BUNDLE_PYTHONS ?= 3.11 3.12
GPU_CHECK_ARGS ?=

.PHONY: gpu-bundle gpu-install gpu-check

gpu-bundle:  ## wheels the GPU check needs beyond torch/torchvision/numpy/scikit-learn (x86_64 Linux)
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)
	for version in $(GPU_BUNDLE_PYTHONS); do \
	  python3 -m pip download -q --only-binary=:all: --implementation cp \
	    --python-version $$version --platform manylinux2014_x86_64 \
	    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	    -r adaptflow/bench/gpu_requirements.txt -d $(GPU_BUNDLE) || exit 1; \
	done
	@ls $(GPU_BUNDLE); du -sh $(GPU_BUNDLE)

gpu-install:  ## install the bundle into GPU_PYTHON offline (pip --no-index), only what it lacks
	$(GPU_PYTHON) -m adaptflow.bench.gpu_check --install-only --bundle $(GPU_BUNDLE)

gpu-check:  ## on a GPU machine: offline install, CUDA tests, throughput at GPU settings, summary
	$(GPU_PYTHON) -m adaptflow.bench.gpu_check --bundle $(GPU_BUNDLE) --results $(GPU_RESULTS) \
	  $(GPU_CHECK_ARGS)

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
	$(BIN)/python -m adaptflow.orchestration.ci_report --base $(BASE) --out ci-report

# ---- committed results: each benchmark writes a file under results/ with its command, UTC
# date, machine, load average and git commit; the measured figures in README.md and docs/ are
# rendered from those files (make results-docs) and a test checks that they agree.
# One thread per benchmark (OMP_NUM_THREADS=1): figures from a shared machine stay comparable.
DEMO_RUN := .adaptflow/demo-run
RESULTS_ENV := OMP_NUM_THREADS=1

.PHONY: results-all results-docs results-check results-methods results-rank results-demo-run \
	results-predict results-throughput results-ddp results-shifts results-shifts-longer \
	results-rungs results-labels results-warnings

RESULTS_ALL := results-methods results-rank results-demo-run results-predict results-throughput \
	results-ddp results-shifts results-shifts-longer results-rungs results-labels results-warnings
results-all: $(RESULTS_ALL)  ## every benchmark into results/, then the docs' figures (hours)
	$(MAKE) results-docs

results-docs: install  ## rewrite the figures of README.md and docs/ from results/
	$(BIN)/python -m adaptflow.bench.docs

results-check: install  ## exit 1 if the figures of README.md or docs/ differ from results/
	$(BIN)/python -m adaptflow.bench.docs --check

results-methods: install  ## results/methods.json: every method, 3 seeds (make bench, recorded)
	dvc repro prepare
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench methods --json results/methods.json

results-rank: install  ## results/rank.json: the rank benchmark (make bench-rank, recorded)
	dvc repro prepare
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench rank --json results/rank.json

results-demo-run: install  ## results/stage_timings.json: a fresh demo run, timed stage by stage
	rm -rf $(DEMO_RUN)
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench demo-run --workdir $(DEMO_RUN) \
	  --json results/stage_timings.json

results-predict: install  ## results/predict.json: adaptflow predict img/s, the demo run's model
	test -f $(DEMO_RUN)/models/model.onnx || $(MAKE) results-demo-run
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench predict --repeats 5 \
	  --model $(DEMO_RUN)/models/model.onnx --images $(DEMO_RUN)/data/demo/digits/test \
	  --json results/predict.json

results-throughput: install  ## results/throughput/cpu_*.json: adapt loop vs plain PyTorch, CPU
	for method in source_only dann; do \
	  $(RESULTS_ENV) $(BIN)/python -m adaptflow.bench throughput --device cpu --method $$method \
	    --json results/throughput/cpu_$$method.json || exit 1; \
	done

results-ddp: install  ## results/ddp_agreement.json: 1 vs 2 gloo processes, every method
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench ddp --json results/ddp_agreement.json

results-shifts: install  ## results/shifts.json: every method on 4 hard shifts x 3 seeds (make bench-shifts)
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench shifts --json results/shifts.json

results-rungs: install  ## results/rungs.json: auto on its budget against every member to the end, on the suite (~20 min)
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench rungs --json results/rungs.json

SHIFTS_LONGER := pretrain.epochs=8 adapt.epochs=10
results-labels: install  ## results/labels.json: the choice with 0-48 target labels, active vs random queries, on the suite
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench labels --finetune-epochs 2 --json results/labels.json

results-warnings: install  ## results/warnings.json: the disagreement warnings' false alarms and misses on the suite
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench warnings --json results/warnings.json

results-shifts-longer: install  ## results/shifts_longer.json: the same suite, twice the training (~1 h)
	$(RESULTS_ENV) $(BIN)/python -m adaptflow.bench shifts --set $(SHIFTS_LONGER) \
	  --json results/shifts_longer.json
