"""Opt-in: the README's Snowflake command against a real Snowflake account.

fakesnow (test_snowflake.py, test_models_snowflake.py) cannot prove authentication,
grants, staging (PUT, the stage read in the MERGE), Snowflake's own VARIANT casts or its
session time zone. This test runs `meltano run tap-kapwork target-snowflake
dbt-snowflake:build` as the README shows it, on a small `start_date` window of a local
sandbox, into schemas of its own (dropped afterwards), when the connection variables are
set; otherwise it is skipped, and pytest's report says which variables to set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid

import pytest
from e2e_helpers import ROOT, meltano, meltano_env
from helpers import API_KEY
from models_expected import aging_totals, naive

from kapwork_sandbox import Sandbox

REQUIRED = (
    "TARGET_SNOWFLAKE_ACCOUNT",
    "TARGET_SNOWFLAKE_USER",
    "TARGET_SNOWFLAKE_WAREHOUSE",
    "TARGET_SNOWFLAKE_DATABASE",
)
AUTH = ("TARGET_SNOWFLAKE_PRIVATE_KEY_PATH", "TARGET_SNOWFLAKE_PASSWORD")
PYTHON = ROOT / ".meltano" / "utilities" / "dbt-snowflake" / "venv" / "bin" / "python"
WINDOW = dt.timedelta(days=30)
# Runs in the dbt-snowflake virtualenv (it has the Snowflake connector): the statements in
# argv[1] with target-snowflake's connection, their rows as JSON.
QUERY = """
import json, os, sys
import snowflake.connector
env = os.environ.get
auth = (
    {"private_key_file": env("TARGET_SNOWFLAKE_PRIVATE_KEY_PATH"),
     "private_key_file_pwd": env("TARGET_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE") or None}
    if env("TARGET_SNOWFLAKE_PRIVATE_KEY_PATH") else {"password": env("TARGET_SNOWFLAKE_PASSWORD")}
)
with snowflake.connector.connect(
    account=env("TARGET_SNOWFLAKE_ACCOUNT"), user=env("TARGET_SNOWFLAKE_USER"),
    role=env("TARGET_SNOWFLAKE_ROLE") or None, warehouse=env("TARGET_SNOWFLAKE_WAREHOUSE"),
    database=env("TARGET_SNOWFLAKE_DATABASE"), **auth,
) as conn:
    out = [conn.cursor().execute(sql).fetchall() for sql in json.loads(sys.argv[1])]
print(json.dumps(out, default=str))
"""


def _missing() -> list[str]:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if not any(os.environ.get(name) for name in AUTH):
        missing.append(" or ".join(AUTH))
    return missing


@pytest.mark.skipif(
    bool(_missing()),
    reason="a real Snowflake account: set "
    + ", ".join(_missing())
    + " (README, Load into Snowflake)",
)
def test_meltano_run_into_a_snowflake_account(tmp_path):
    suffix = uuid.uuid4().hex[:8].upper()
    source, models = f"KAPWORK_SMOKE_{suffix}", f"KAPWORK_SMOKE_{suffix}_MODELS"
    database = os.environ["TARGET_SNOWFLAKE_DATABASE"]

    def query(*statements: str) -> list:
        proc = subprocess.run(
            [str(PYTHON), "-c", QUERY, json.dumps(statements)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    start = dt.datetime.now(dt.timezone.utc) - WINDOW
    try:
        with Sandbox(receivables=300, seed=11, api_key=API_KEY, profile="realistic") as sandbox:
            env = meltano_env(
                sandbox,
                tmp_path,
                "prod",
                TAP_KAPWORK_START_DATE=start.date().isoformat(),
                TARGET_SNOWFLAKE_DEFAULT_TARGET_SCHEMA=source,
                DBT_SNOWFLAKE_TARGET_SCHEMA=models,
            )
            proc = meltano("run", "tap-kapwork", "target-snowflake", "dbt-snowflake:build", env=env)
            truth = sandbox.truth()
        assert "ERROR=0" in proc.stdout + proc.stderr
        since = dt.datetime.combine(start.date(), dt.time())
        window = [r for r in truth if naive(r["updated_at"]) >= since]
        assert window, "the window holds no receivable"
        loaded, aging, quoted = query(
            f"select count(*) from {models}.RECEIVABLES_CURRENT",
            f"select currency, aging_bucket, sum(open_amount_cents) from {models}.AGING_BY_DEBTOR "
            "group by currency, aging_bucket",
            f"select count(*) from {models}.RECEIVABLES_CURRENT "
            "where startswith(debtor_name, '\"') or startswith(status, '\"')",
        )
    finally:
        query(
            f"drop schema if exists {database}.{models} cascade",
            f"drop schema if exists {database}.{source} cascade",
        )
    assert loaded == [[len(window)]]
    # The build date is UTC's (the session's default zone is America/Los_Angeles).
    today = dt.datetime.now(dt.timezone.utc).date()
    assert {(c, b): int(cents) for c, b, cents in aging} == aging_totals(window, today)
    assert quoted == [[0]]  # VARIANT fields read as text, not JSON
