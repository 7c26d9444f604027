# vllm-cfs: `make test` runs the test suite, `make hw2` runs the whole experiment.
# Both create .venv on first use and rebuild it only when the pins (pyproject.toml, constraints.txt)
# change: installing vLLM 0.9.0 pulls torch 2.7.0, several GB worth caching.

PYTHON ?= python3
VENV := .venv
PIN_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.pins-$(PIN_HASH)
PY := $(VENV)/bin/python

.PHONY: venv test hw2 bench clean-venv

venv: $(STAMP)

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Two or more workers (pytest-xdist): one module's vLLM server starts while another's burst runs;
# tests/conftest.py keeps each module, and each folder that shares a server, on one worker.
test: venv
	$(VENV)/bin/pytest -q -n auto --maxprocesses 4

# HW2_ARGS: options for hw2/run_all.sh, e.g. `make hw2 HW2_ARGS=--staged-swap` (its --help lists them)
HW2_ARGS ?=

hw2: venv
	bash hw2/run_all.sh $(HW2_ARGS)

bench: venv
	$(PY) benchmarks/benchmark_scheduler.py

clean-venv:
	rm -rf $(VENV)
