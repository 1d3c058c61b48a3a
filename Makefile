# Fresh machine: `make demo` or `make test` create .venv, install pinned dependencies, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench bench-env bench-memory quality lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Pinned CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo_ctr.py
	$(PY) examples/demo_next_item.py
	$(PY) examples/demo_text.py

test: $(STAMP)
	$(PY) -m pytest

# Torch-RecHub 0.9.0 for the side-by-side speed table, in its own venv (gitignored). Give your own
# interpreter with TORCH_RECHUB_PYTHON=/path/to/python to skip it. Subsets and sizes:
# BENCH_CASES=deepfm,mmoe BENCH_SCALE=0.05 BENCH_REPEATS=1 make bench
RECHUB_VENV := bench/.rechub-venv
RECHUB_STAMP := $(RECHUB_VENV)/.installed
RECHUB_DEP := $(if $(TORCH_RECHUB_PYTHON),,$(RECHUB_STAMP))

bench-env: $(RECHUB_DEP)

$(RECHUB_STAMP):
	test -x $(RECHUB_VENV)/bin/python || $(PYTHON) -m venv $(RECHUB_VENV)
	# torch first and pinned (CPU build); the constraint keeps torch-rechub from upgrading it.
	$(RECHUB_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(RECHUB_VENV)/bin/python -m pip install --quiet torch-rechub==0.9.0 torch==2.13.0
	$(RECHUB_VENV)/bin/python -c "import torch, torch_rechub; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(RECHUB_STAMP)

bench: $(STAMP) $(RECHUB_DEP)
	TORCH_RECHUB_PYTHON=$(or $(TORCH_RECHUB_PYTHON),$(RECHUB_VENV)/bin/python) $(PY) bench/run.py
	$(PY) bench/integrity_cost.py

# Peak RSS of one DeepFM epoch streamed from 1M Parquet rows (writes the data first; a few minutes).
bench-memory: $(STAMP)
	$(PY) bench/parquet_memory.py --rows 1000000

# Model-quality checks on ../shared/data (each skips with a message when the data is absent; ~15 min).
quality: $(STAMP)
	$(PY) bench/frappe.py
	$(PY) bench/census.py
	$(PY) bench/movielens.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples bench

clean:
	rm -rf runs .pytest_cache
