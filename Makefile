# Quick start: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
MELTANO_VENV := .venv-meltano
MELTANO := $(MELTANO_VENV)/bin/meltano
# Tested with Meltano 4.4.1; the loaders' versions are pinned in meltano.yml.
MELTANO_VERSION ?= 4.4.1
DLT_VENV := .venv-dlt
# benchmarks/dlt_kapwork.py is measured with this dlt (an optional reference, not needed
# to run the tap).
DLT_VERSION ?= 1.31.0

.PHONY: demo test targets-table unit check install meltano chromium lint bench bench-pipeline dlt readme hub clean

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
	@# Meltano installs plugins with uv, which writes no bytecode; where
	@# PYTHONDONTWRITEBYTECODE is set (many container images) every start of the tap and
	@# the loaders then compiles the SDK again: tap start-up 0.88 s -> 0.36 s,
	@# target-postgres 1.6 s -> 0.66 s (benchmarks/pipeline.py, "Start-up costs").
	@for py in .meltano/*/*/venv/bin/python; do "$$py" -m compileall -q -j 0 "$${py%/bin/python}/lib" >/dev/null || true; done
	@touch $@

# meltano.yml installs the tap as a package (`pip_url: .`, so Meltano caches its catalog):
# reinstalled here when its source changes, and the cached catalog dropped so the next
# `meltano run` discovers the new streams' schemas once.
TAP_SOURCES := pyproject.toml $(wildcard tap_kapwork/*.py)
.meltano/.tap-installed: .meltano/.installed $(TAP_SOURCES)
	@echo "==> Reinstalling tap-kapwork into Meltano (tap_kapwork/ changed)"
	@$(MELTANO) install extractor tap-kapwork
	@.meltano/extractors/tap-kapwork/venv/bin/python -m compileall -q -j 0 .meltano/extractors/tap-kapwork/venv/lib >/dev/null || true
	@rm -f .meltano/run/tap-kapwork*/tap.properties.cache_key
	@touch $@

# tests/e2e/test_snowflake.py and test_models_snowflake.py: the Snowflake emulator, next to
# the target-snowflake and the dbt-snowflake that `meltano install` put in their own
# virtualenvs (Meltano installs plugins with uv).
FAKESNOW_VERSION := 0.12.1
SNOWFLAKE_VENV := .meltano/loaders/target-snowflake/venv
DBT_SNOWFLAKE_VENV := .meltano/utilities/dbt-snowflake/venv
FAKESNOW := $(SNOWFLAKE_VENV)/.fakesnow-$(FAKESNOW_VERSION) $(DBT_SNOWFLAKE_VENV)/.fakesnow-$(FAKESNOW_VERSION)
$(FAKESNOW): %/.fakesnow-$(FAKESNOW_VERSION): .meltano/.installed
	@$(MELTANO_VENV)/bin/uv pip install -q --python $*/bin/python "fakesnow==$(FAKESNOW_VERSION)"
	@touch $@

install: $(VENV)/.installed
meltano: $(VENV)/.installed .meltano/.installed .meltano/.tap-installed $(FAKESNOW)

demo: meltano
	@$(VENV)/bin/python scripts/demo.py

# tests/e2e/test_report.py opens the demo's report in Debian's Chromium (never a browser a
# test tool downloads): installed here when missing, so `make test` sets up everything.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> Installing Debian's chromium (for tests/e2e/test_report.py)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "tests/e2e/test_report.py needs Debian's chromium at $(CHROMIUM): run 'sudo apt-get install chromium', then make test again." >&2; \
	    exit 1; \
	  fi; }

# On both cores (pytest-xdist): tests that must share a worker carry an xdist_group mark.
# TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: meltano chromium
	@echo "==> Running the test suite ($(TEST_WORKERS) workers)"
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# README "Targets we test": measure each loader again (tests/e2e/test_targets.py writes its
# findings instead of comparing them), then rewrite docs/targets.json and the README table.
targets-table: meltano
	@dir=$$(mktemp -d) && \
	  KAPWORK_TARGETS_OUT=$$dir $(VENV)/bin/python -m pytest tests/e2e/test_targets.py -q \
	    -n $(TEST_WORKERS) --dist loadgroup -p no:cacheprovider && \
	  $(VENV)/bin/python scripts/targets_table.py --measured $$dir; \
	  status=$$?; rm -rf $$dir; exit $$status

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

# The tap against a hand-written loop, on the realistic profile, then on the edge profile
# (long histories), which the tap/loop targets were defined on.
bench: install
	@$(VENV)/bin/python benchmarks/bench.py --receivables 10000 100000 --latency-ms 25

# The whole pipeline: tap alone, meltano run into PostgreSQL (project settings, BATCH,
# the loader's defaults) and DuckDB, and dlt's rest_api on the same data (realistic
# profile; `--profile edge` for long histories, `--receivables 1000000 --only ...` for a
# million).
bench-pipeline: meltano dlt
	@$(VENV)/bin/python benchmarks/pipeline.py --receivables 20000 100000

$(DLT_VENV)/.installed:
	@echo "==> Installing dlt $(DLT_VERSION) into $(DLT_VENV) (benchmark reference only)"
	@test -x $(DLT_VENV)/bin/python || $(PYTHON) -m venv $(DLT_VENV)
	@$(DLT_VENV)/bin/python -m pip install --disable-pip-version-check -q "dlt[duckdb,postgres]==$(DLT_VERSION)" "duckdb==1.1.3"
	@touch $@

dlt: $(DLT_VENV)/.installed

readme: install
	@$(VENV)/bin/python scripts/readme_settings.py

# The Meltano Hub definition, from `tap-kapwork --about` (tests/test_hub.py keeps it in step).
hub: install
	@$(VENV)/bin/python scripts/hub_definition.py

clean:
	rm -rf $(VENV) $(MELTANO_VENV) $(DLT_VENV) .venv-loaders .meltano .demo
	find output -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
