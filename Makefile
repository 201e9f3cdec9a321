# Two commands on a fresh machine: `make serve` and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODEL  ?= hf-hub:mkaichristensen/echo-clip
DATA   ?= ./echosearch-data
HOST   ?= 127.0.0.1
PORT   ?= 50051
PYTEST_ARGS ?=

.PHONY: install serve test lint proto proto-check bench clean

# Say what is happening: the first install downloads torch, faiss and duckdb and takes minutes.
$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV): echosearch with its server, bulk, ui, dicom and test extras"
	@echo "==> (torch, faiss, duckdb, ray, pydicom, starlette, ...)."
	@echo "==> The first time this downloads about 1 GB and takes several minutes; pip lists each package below."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[server,bulk,ui,test,dicom]'
	touch $(STAMP)
	@echo "==> $(VENV) is ready."

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/echosearch serve --data $(DATA) --model $(MODEL) --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint proto-check
	$(PY) -m pytest $(PYTEST_ARGS)

# Regenerate clients/echosearch/v1 from proto/ (the only way that code changes).
proto: $(STAMP)
	$(PY) tools/genproto.py

proto-check: $(STAMP)
	$(PY) tools/genproto.py --check

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/store.py
	$(PY) bench/score.py
	$(PY) bench/api.py
	$(PY) bench/gpu.py
	$(PY) bench/bulk.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
