# Quick start: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
MELTANO_VENV := .venv-meltano
MELTANO := $(MELTANO_VENV)/bin/meltano
# Tested with Meltano 4.4.1; the loaders' versions are pinned in meltano.yml.
MELTANO_VERSION ?= 4.4.1

.PHONY: demo test install meltano lint bench readme clean

$(VENV)/.installed: pyproject.toml
	@echo "==> [1/3] Creating $(VENV) and installing tap-kapwork with its test tools"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install --progress-bar on --disable-pip-version-check -q --upgrade pip
	@$(VENV)/bin/python -m pip install --progress-bar on --disable-pip-version-check -e '.[dev]'
	@touch $@

$(MELTANO_VENV)/.installed:
	@echo "==> [2/3] Installing Meltano $(MELTANO_VERSION) into $(MELTANO_VENV)"
	@test -x $(MELTANO_VENV)/bin/python || $(PYTHON) -m venv $(MELTANO_VENV)
	@$(MELTANO_VENV)/bin/python -m pip install --progress-bar on --disable-pip-version-check "meltano==$(MELTANO_VERSION)"
	@touch $@

.meltano/.installed: meltano.yml $(MELTANO_VENV)/.installed
	@echo "==> [3/3] Installing the Meltano plugins (tap-kapwork, the loaders and dbt in meltano.yml)"
	@$(MELTANO) install
	@touch $@

install: $(VENV)/.installed
meltano: $(VENV)/.installed .meltano/.installed

demo: meltano
	@$(VENV)/bin/python scripts/demo.py

test: meltano
	@echo "==> Running the test suite"
	@$(VENV)/bin/python -m pytest

lint: install
	@$(VENV)/bin/ruff check . && $(VENV)/bin/mypy tap_kapwork kapwork_sandbox

bench: install
	@$(VENV)/bin/python benchmarks/bench.py --receivables 10000 100000 --latency-ms 25

readme: install
	@$(VENV)/bin/python scripts/readme_settings.py

clean:
	rm -rf $(VENV) $(MELTANO_VENV) .meltano output .demo
