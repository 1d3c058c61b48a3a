# Fresh machine: `make demo` or `make test` create .venv, install pinned dependencies, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench bench-memory quality lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Pinned CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo_ctr.py
	$(PY) examples/demo_text.py

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

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
