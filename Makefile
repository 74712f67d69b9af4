# vqvid: `make demo` runs the whole pipeline on synthetic data; `make test` runs the tests.
# Both create .venv on first use. torch is installed first, and the build is chosen here:
#   - a machine where `nvidia-smi -L` finds a GPU gets PyPI's torch wheel, which on Linux is the CUDA build;
#   - any other machine gets the CPU build: from the PyTorch CPU index when it answers, otherwise from the
#     indexes pip is configured with (pin the version with TORCH_VERSION, or pass a whole spec in TORCH_SPEC).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=

HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
ifeq ($(HAS_GPU),yes)
TORCH_FLAGS ?=
else
CPU_INDEX_UP := $(shell $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=3)" >/dev/null 2>&1 && echo yes)
TORCH_FLAGS ?= $(if $(CPU_INDEX_UP),--extra-index-url $(TORCH_CPU_INDEX))
endif

.PHONY: demo test test-slow bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install $(TORCH_FLAGS) "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.base: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.base
	$(BIN)/pip install -e ".[dev]"
	@touch $@

install: $(VENV)/.base

demo: $(VENV)/.base
	$(BIN)/vqvid demo --out demo_out

test: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.dev
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(VENV)/.base
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(VENV)/.dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo_out .pytest_cache
