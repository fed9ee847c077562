"""`meltano run tap-kapwork target-postgres` with flattening on in the tap: `vendor` and
`debtor` become columns, `metadata` stays one column holding its JSON (its keys are the
portal's and vary), and every record key the loader receives is declared in its SCHEMA."""

from __future__ import annotations

import json
import typing as t

import psycopg
from e2e_helpers import conninfo, meltano, meltano_env, target_postgres_env
from helpers import API_KEY
from psycopg.rows import dict_row

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import expected_history_rows

if t.TYPE_CHECKING:
    from pathlib import Path

SCHEMA = "kapwork_flattened"


def test_meltano_run_with_flattening_into_postgres_keeps_metadata(
    postgres: dict, tmp_path: Path
) -> None:
    with Sandbox(receivables=300, seed=41, api_key=API_KEY) as sandbox:
        env = meltano_env(
            sandbox,
            tmp_path,
            TAP_KAPWORK_FLATTENING_ENABLED="true",
            TAP_KAPWORK_FLATTENING_MAX_DEPTH="1",
            **target_postgres_env(postgres, SCHEMA),
        )
        meltano("run", "tap-kapwork", "target-postgres", env=env)
        truth = {r["id"]: r for r in sandbox.truth()}

    with psycopg.connect(conninfo(postgres), row_factory=dict_row) as conn:
        rows = conn.execute(f"select * from {SCHEMA}.receivables").fetchall()
        (history,) = conn.execute(f"select count(*) as n from {SCHEMA}.receivable_history")
        columns = {
            row["column_name"]: row["data_type"]
            for row in conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = %s and table_name = 'receivables'",
                (SCHEMA,),
            )
        }
    assert {"vendor__id", "vendor__name", "debtor__id", "debtor__name", "metadata"} <= set(columns)
    assert not [c for c in columns if c.startswith("metadata__")]
    assert columns["metadata"] in {"text", "character varying"}
    assert {r["id"] for r in rows} == set(truth)
    assert any(truth[rid]["metadata"] for rid in truth)
    for row in rows:
        expected = truth[row["id"]]
        # The SCHEMA declares it a string holding the object's JSON: a text column.
        assert json.loads(row["metadata"]) == expected["metadata"]
        assert (row["vendor__name"], row["debtor__id"]) == (
            expected["vendor"]["name"],
            expected["debtor"]["id"],
        )
    assert history["n"] == len(expected_history_rows(list(truth.values())))
