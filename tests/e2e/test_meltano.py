"""The user's path: `meltano run tap-kapwork target-duckdb`, twice, with Meltano's state."""

from __future__ import annotations

import json
import os
import subprocess

import duckdb
import pytest
import yaml
from e2e_helpers import ROOT, loader
from e2e_helpers import meltano as run_meltano
from helpers import API_KEY

from kapwork_sandbox.testing import expected_history_rows


def meltano(*args: str, env: dict[str, str]) -> str:
    return run_meltano(*args, env=env).stdout


def test_meltano_run_full_then_incremental(e2e_sandbox, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    env = {
        **os.environ,
        "MELTANO_ENVIRONMENT": "dev",
        # Its own system database: state from `make demo` must not leak in, nor ours out.
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_KAPWORK_API_URL": e2e_sandbox.url,
        "TAP_KAPWORK_API_KEY": API_KEY,
        "TARGET_DUCKDB_PATH": str(database),
    }

    def loaded() -> tuple[dict[str, tuple], int]:
        with duckdb.connect(str(database), read_only=True) as db:
            rows = db.sql(
                "select id, status, amount_cents, updated_at from kapwork.receivables"
            ).fetchall()
            history = db.sql("select count(*) from kapwork.receivable_history").fetchall()[0][0]
        return {r[0]: r[1:] for r in rows}, history

    meltano("run", "tap-kapwork", "target-duckdb", env=env)
    truth = e2e_sandbox.truth()
    receivables, history = loaded()
    assert set(receivables) == {r["id"] for r in truth}
    assert history == len(expected_history_rows(truth))

    state = json.loads(meltano("state", "get", "dev:tap-kapwork-to-target-duckdb", env=env))
    bookmark = state["singer_state"]["bookmarks"]["receivables"]["replication_key_value"]
    assert bookmark

    changed = e2e_sandbox.mutate(30)
    e2e_sandbox.clear_requests()
    meltano("run", "tap-kapwork", "target-duckdb", env=env)
    truth = {r["id"]: r for r in e2e_sandbox.truth()}
    receivables, history = loaded()
    assert len(receivables) == len(truth)
    for rid in changed:
        assert receivables[rid][:2] == (truth[rid]["status"], truth[rid]["amount_cents"])
    assert history == len(expected_history_rows(list(truth.values())))
    lists = [r for r in e2e_sandbox.requests if r["path"] == "/v1/receivables"]
    assert lists
    assert all(r["params"]["verified_since"] != ["all"] for r in lists), "run 2 must be incremental"


@pytest.mark.parametrize("name", ["target-postgres", "target-snowflake"])
def test_loader_settings_in_meltano_yml_exist_in_the_pinned_loader(name):
    # CI has no Snowflake account: this at least proves that the pinned loader installs,
    # starts, and knows every setting meltano.yml (and the README) tell users to set.
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["loaders"] if p["name"] == name]
    about = subprocess.run(
        [loader(name), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    known = set(json.loads(about.stdout)["settings"]["properties"])
    declared = {setting["name"] for setting in plugin["settings"]}
    assert declared
    assert declared <= known, declared - known
