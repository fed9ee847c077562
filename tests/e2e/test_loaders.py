"""tap-kapwork | target-postgres and | target-duckdb: rows, values and types read back."""

from __future__ import annotations

import json
import typing as t
from collections import Counter

import duckdb
import psycopg
from e2e_helpers import loader, pipe
from helpers import tap_config

from kapwork_sandbox.testing import expected_history_rows
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from pathlib import Path

    from kapwork_sandbox import Sandbox


def _normal(rows: Counter) -> Counter:
    return Counter(
        {(r, parse_timestamp(str(c)).replace(tzinfo=None), f): n for (r, c, f), n in rows.items()}
    )


def _truth_keys(truth: list[dict]) -> Counter:
    return _normal(
        Counter(
            (rid, changed_at, field)
            for rid, changed_at, field, _, _ in expected_history_rows(truth)
        )
    )


def _as_text(value: t.Any) -> str | None:
    return None if value is None else str(value)


def _check_values(truth: list[dict], loaded: dict[str, tuple]) -> None:
    """loaded: id -> (status, portal_status, amount_cents, due_date, vendor_name, metadata)."""
    assert set(loaded) == {r["id"] for r in truth}
    for rec in truth:
        status, portal_status, amount, due_date, vendor_name, metadata = loaded[rec["id"]]
        assert (status, portal_status, amount) == (
            rec["status"],
            rec["portal_status"],
            rec["amount_cents"],
        )
        assert _as_text(due_date) == rec["due_date"]
        assert vendor_name == rec["vendor"]["name"]
        assert metadata == rec["metadata"]


def _run_twice(
    sandbox: Sandbox, target: str, target_config: Path, read: t.Callable[[], tuple]
) -> None:
    """Full sync, checks; mutate; incremental sync with the state; checks again."""
    truth = sandbox.truth()
    state = pipe(tap_config(sandbox), target, target_config)
    loaded, history = read()
    _check_values(truth, loaded)
    assert _normal(history) == _truth_keys(truth)

    changed = sandbox.mutate(60)
    inserted = sandbox.insert(15)
    truth = sandbox.truth()
    pipe(tap_config(sandbox), target, target_config, state=state)
    loaded, history = read()
    _check_values(truth, loaded)  # updated in place: one row per id, latest values
    assert len(loaded) == len(truth) == 1515
    assert _normal(history) == _truth_keys(truth)  # new changes added, none twice
    assert len(changed) == 60
    assert len(inserted) == 15


def test_into_postgres(e2e_sandbox, postgres, tmp_path):
    schema = "kapwork_e2e"
    config = tmp_path / "target-postgres.json"
    config.write_text(json.dumps({**postgres, "default_target_schema": schema}))
    conninfo = " ".join(
        f"{k}={v}"
        for k, v in {**postgres, "dbname": postgres["database"]}.items()
        if k != "database" and v != ""
    )

    def read() -> tuple:
        with psycopg.connect(conninfo) as conn:
            loaded = {
                row[0]: row[1:]
                for row in conn.execute(
                    "select id, status, portal_status, amount_cents, due_date, vendor->>'name', "
                    f"metadata from {schema}.receivables"
                )
            }
            rows = conn.execute(
                f"select receivable_id, changed_at, field from {schema}.receivable_history"
            ).fetchall()
            ids = conn.execute(
                f"select count(*), count(distinct id) from {schema}.receivables"
            ).fetchall()[0]
            assert ids[0] == ids[1], "duplicate primary keys"
        return loaded, Counter(rows)

    _run_twice(e2e_sandbox, loader("target-postgres"), config, read)

    with psycopg.connect(conninfo) as conn:
        types = dict(
            conn.execute(
                "select table_name || '.' || column_name, data_type "
                "from information_schema.columns "
                "where table_schema = %s",
                (schema,),
            ).fetchall()
        )
        (history_rows,) = conn.execute(
            f"select count(*) from {schema}.receivable_history"
        ).fetchall()[0]
    assert types["receivables.amount_cents"] == "bigint"
    assert types["receivables.updated_at"].startswith("timestamp")
    assert types["receivables.detected_at"].startswith("timestamp")
    assert types["receivable_history.changed_at"].startswith("timestamp")
    assert types["receivables.due_date"] == "date"
    for column in ("metadata", "vendor", "debtor"):
        assert types[f"receivables.{column}"] == "jsonb"
    print(f"\nPostgreSQL: 1515 receivables, {history_rows} receivable_history rows")


def test_into_duckdb(e2e_sandbox, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    config = tmp_path / "target-duckdb.json"
    config.write_text(json.dumps({"path": str(database), "default_target_schema": "kapwork"}))

    def read() -> tuple:
        with duckdb.connect(str(database), read_only=True) as db:
            loaded = {
                row[0]: (*row[1:5], json.loads(row[5])["name"], json.loads(row[6]))
                for row in db.sql(
                    "select id, status, portal_status, amount_cents, due_date, vendor, metadata "
                    "from kapwork.receivables"
                ).fetchall()
            }
            rows = db.sql(
                "select receivable_id, changed_at, field from kapwork.receivable_history"
            ).fetchall()
        return loaded, Counter(rows)

    _run_twice(e2e_sandbox, loader("target-duckdb"), config, read)

    with duckdb.connect(str(database), read_only=True) as db:
        types = dict(
            db.sql(
                "select table_name || '.' || column_name, data_type "
                "from information_schema.columns "
                "where table_schema = 'kapwork'"
            ).fetchall()
        )
        history_rows = db.sql("select count(*) from kapwork.receivable_history").fetchone()[0]
    assert types["receivables.amount_cents"] == "BIGINT"
    assert types["receivables.updated_at"].startswith("TIMESTAMP")
    assert types["receivable_history.changed_at"].startswith("TIMESTAMP")
    for column in ("metadata", "vendor", "debtor"):
        assert types[f"receivables.{column}"] == "JSON"
    print(f"\nDuckDB: 1515 receivables, {history_rows} receivable_history rows")
