# Quick start: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
MELTANO_VENV := .venv-meltano
MELTANO := $(MELTANO_VENV)/bin/meltano
# Tested with Meltano 4.4.1; the loaders' versions are pinned in meltano.yml.
MELTANO_VERSION ?= 4.4.1

.PHONY: demo test unit check install meltano lint bench readme hub clean

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

# tests/e2e/test_snowflake.py: the Snowflake emulator, next to the target-snowflake that
# `meltano install` put in its own virtualenv (Meltano installs plugins with uv).
FAKESNOW_VERSION := 0.12.1
SNOWFLAKE_VENV := .meltano/loaders/target-snowflake/venv
$(SNOWFLAKE_VENV)/.fakesnow-$(FAKESNOW_VERSION): .meltano/.installed
	@$(MELTANO_VENV)/bin/uv pip install -q --python $(SNOWFLAKE_VENV)/bin/python "fakesnow==$(FAKESNOW_VERSION)"
	@touch $@

install: $(VENV)/.installed
meltano: $(VENV)/.installed .meltano/.installed $(SNOWFLAKE_VENV)/.fakesnow-$(FAKESNOW_VERSION)

demo: meltano
	@$(VENV)/bin/python scripts/demo.py

test: meltano
	@echo "==> Running the test suite"
	@$(VENV)/bin/python -m pytest

# Fast tests: no Meltano, no PostgreSQL, no sandbox (markers set in tests/markers.py).
unit: install
	@$(VENV)/bin/python -m pytest -m unit -q

# What CI runs before the tests, and what .pre-commit-config.yaml runs on each commit.
check: install
	@echo "==> ruff check, ruff format --check, mypy"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy tap_kapwork kapwork_sandbox tests

lint: check

bench: install
	@$(VENV)/bin/python benchmarks/bench.py --receivables 10000 100000 --latency-ms 25

readme: install
	@$(VENV)/bin/python scripts/readme_settings.py

# The Meltano Hub definition, from `tap-kapwork --about` (tests/test_hub.py keeps it in step).
hub: install
	@$(VENV)/bin/python scripts/hub_definition.py

clean:
	rm -rf $(VENV) $(MELTANO_VENV) .meltano .demo
	find output -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
