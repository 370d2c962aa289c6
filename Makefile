# turbtl — two commands for a newcomer:  `make run`  and  `make test`.  Both call `make setup`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Override for GPU clusters, e.g. TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PRESET ?= small
RUN_DIR ?= runs/$(PRESET)
STAMP  := $(VENV)/.turbtl-setup-stamp
export OMP_NUM_THREADS ?= 1
export MPLBACKEND = Agg

.PHONY: setup run test test-serial test-mpi sysdeps bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, with an explicit pin, so that no later step can resolve a newer (CUDA) build
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)
	@echo "set-up done: $(VENV) ($$($(PY) -c 'import torch; print("torch", torch.__version__)'))"

# Optional system packages for the SLURM and browser tests (root + apt only; skipped otherwise).
sysdeps:
	@bash jobs/sysdeps.sh || echo "note: system packages unavailable; SLURM/browser tests will skip"

run: setup
	$(VENV)/bin/turbtl run --preset $(PRESET) --run-dir $(RUN_DIR)

test: setup sysdeps
	$(MAKE) --no-print-directory test-serial test-mpi

test-serial: setup
	$(PY) -m pytest tests

# Every test marked `mpi` runs again on 2 and 4 ranks (oversubscribed on 2 cores). A failing rank
# fails mpiexec; a hanging one is killed by pytest-timeout and by the outer `timeout`.
test-mpi: setup
	@for np in 2 4; do \
	  echo "== MPI tests on $$np ranks =="; \
	  timeout 1200 $(VENV)/bin/mpiexec -n $$np $(PY) -m pytest tests -m mpi -q -p no:cacheprovider || exit 1; \
	done

bench: setup
	bash bench/run.sh

# The CUDA checks and GPU benchmarks (bench/gpu_check.py, < 5 min on one GPU; summary in
# $(GPU_SUMMARY)). Without a GPU it says "no GPU" and exits 0.
GPU_SUMMARY ?= gpu-check-summary.txt
gpu-check: setup
	$(PY) -m bench.gpu_check --out $(GPU_SUMMARY)

clean:
	rm -rf $(VENV) .asv .pytest_cache
