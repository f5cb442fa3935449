# corq developer entry points. `make all` is what CI runs (after installing what is missing).
PY ?= .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: install lint test all demo bench

install:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"

lint:
	ruff format --check src tests bench
	ruff check src tests bench
	mypy src tests
	lint-imports

test:
	pytest -q

all: lint test

bench:
	$(PY) bench/bench.py
