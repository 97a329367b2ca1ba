# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAGE := $(VENV)/bin/stage
STAMP := $(VENV)/.installed

.PHONY: install demo test clean-outputs

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(STAGE) keys init
	$(STAGE) run catalog/demo.csv

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest

clean-outputs:
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
