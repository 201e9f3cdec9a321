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

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,ui,test,dicom]'
	touch $(STAMP)

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
