# Quick start: `make demo` and `make test`, as root on a fresh Debian 12 machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := agent filters station
APT_PACKAGES := b3sum udev

.PHONY: demo test lint typecheck unit bench deps venv clean

demo: venv
	$(VENV)/bin/fieldtriage demo

test: venv lint typecheck unit

lint: venv
	$(VENV)/bin/ruff check $(PACKAGES) tests bench
	$(VENV)/bin/ruff format --check $(PACKAGES) tests bench

typecheck: venv
	$(VENV)/bin/mypy $(PACKAGES)

unit: venv deps
	$(VENV)/bin/pytest -q --doctest-modules $(PACKAGES) tests

bench: venv
	$(PY) bench/run_all.py

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || (apt-get update -qq && apt-get install -y -qq python3 python3-venv)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# System tools the tests compare with or drive; installed only when one is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "missing apt packages:$$missing (tests that need them will skip)"; fi; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
