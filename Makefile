# vllm-cfs: `make test` runs the test suites, `make hw2` runs the whole experiment.
# Two engines, two venvs, each created on first use and rebuilt only when its own pins change
# (torch alone is several GB): .venv holds vLLM 0.9.0 (V0; pyproject.toml, constraints.txt),
# .venv-v1 the V1 pin (requirements-v1.txt, constraints-v1.txt). They cannot share one: torch 2.7 vs 2.11.

PYTHON ?= python3
VENV := .venv
PIN_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.pins-$(PIN_HASH)
PY := $(VENV)/bin/python

VENV_V1 := .venv-v1
V1_PIN_HASH := $(shell cat pyproject.toml requirements-v1.txt constraints-v1.txt | sha256sum | cut -c1-16)
V1_STAMP := $(VENV_V1)/.pins-$(V1_PIN_HASH)

.PHONY: venv venv-v1 test hw2 bench clean-venv

# Each venv takes about 9 GB (torch with its CUDA libraries). Checked before pip starts, because
# pip running out of disk midway fails with an OSError and leaves a half-built venv.
VENV_FREE_GB := 10
define need_free_disk
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt $(VENV_FREE_GB) ]; then \
		echo "make: building $(1) needs about $(VENV_FREE_GB) GB free on this disk, $$free GB are" >&2; exit 1; fi
endef

venv: $(STAMP)

venv-v1: $(V1_STAMP)

$(STAMP):
	rm -rf $(VENV)
	$(call need_free_disk,$(VENV))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

$(V1_STAMP):
	rm -rf $(VENV_V1)
	$(call need_free_disk,$(VENV_V1))
	$(PYTHON) -m venv $(VENV_V1)
	$(VENV_V1)/bin/pip install --quiet --upgrade pip
	$(VENV_V1)/bin/pip install --quiet -c constraints-v1.txt -r requirements-v1.txt
	$(VENV_V1)/bin/pip install --quiet --no-deps -e .
	touch $@

# Two or more workers (pytest-xdist): one module's vLLM server starts while another's burst runs;
# tests/conftest.py keeps each module, and each folder that shares a server, on one worker.
# Each venv runs the suites its vLLM can import (tests/conftest.py): .venv every folder but tests/v1,
# .venv-v1 tests/v1.
test: venv venv-v1
	$(VENV)/bin/pytest -q -n auto --maxprocesses 4
	$(VENV_V1)/bin/pytest -q -n auto --maxprocesses 4

# HW2_ARGS: options for hw2/run_all.sh, e.g. `make hw2 HW2_ARGS=--staged-swap` (its --help lists them)
HW2_ARGS ?=
# ENGINE: v0 (vLLM 0.9.0's V0 engine in .venv, the assignment's) or v1 (vLLM V1 in .venv-v1):
# `make hw2 ENGINE=v1`. Only that engine's venv is built; any other value builds none and
# run_all.sh refuses it in one line.
ENGINE ?= v0
HW2_VENV_v0 := venv
HW2_VENV_v1 := venv-v1

hw2: $(HW2_VENV_$(ENGINE))
	bash hw2/run_all.sh --engine $(ENGINE) $(HW2_ARGS)

bench: venv
	$(PY) benchmarks/benchmark_scheduler.py

clean-venv:
	rm -rf $(VENV) $(VENV_V1)
