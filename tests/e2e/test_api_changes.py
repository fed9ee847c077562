"""Fields the API adds, through `meltano run tap-kapwork target-postgres` (and
target-duckdb): kept in the catch-all columns, read back with SQL, full, incremental and
full refresh. The typed columns come from the README's SQL ("When the API changes")."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import duckdb
import psycopg
import pytest
from e2e_helpers import conninfo, meltano, meltano_env, target_postgres_env
from helpers import API_KEY, readme_block

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import as_emitted, expected_history_extras
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    pass

RECEIVABLES = "select id, extra_fields from {schema}.receivables"
HISTORY = (
    "select receivable_id, changed_at, field, change_hash, entry_extra_fields, "
    "change_extra_fields from {schema}.receivable_history"
)


def _naive_utc(stamp: str) -> dt.datetime:
    return parse_timestamp(stamp).astimezone(dt.timezone.utc).replace(tzinfo=None)


def _history_key(key: tuple) -> tuple:
    rid, changed_at, field, digest = key
    return (rid, _naive_utc(changed_at), field, digest)


def _check(
    receivables: dict[str, t.Any],
    history: dict[tuple, tuple],
    truth: list[dict],
    before: list[dict] | None = None,
) -> int:
    """Loaded catch-alls equal the truth's undeclared keys; the number of receivables
    that carry some. After an incremental run (`before`: the truth of the previous one),
    a history entry loaded before keeps what it had then: the run reads only new changes
    (or the new values, where the look-back window read it again)."""
    carrying = 0
    for record in truth:
        assert receivables[record["id"]] == as_emitted(record).get("extra_fields"), record["id"]
        carrying += "extra_fields" in as_emitted(record)
    expected = {_history_key(k): v for k, v in expected_history_extras(truth).items()}
    loaded_before = {_history_key(k): v for k, v in expected_history_extras(before or []).items()}
    assert history.keys() == expected.keys()
    for key, value in history.items():
        assert value in (expected[key], loaded_before.get(key, expected[key])), key
    return carrying


def _evolve_before_the_first_run(sandbox: Sandbox) -> None:
    sandbox.add_fields("receivable", share=0.3, seed=1)
    sandbox.add_fields("entry", share=0.3, seed=2)
    sandbox.add_fields("change", share=0.3, seed=3)


def _evolve_before_the_incremental_run(sandbox: Sandbox) -> list[str]:
    """Fields never seen before, on receivables that change now."""
    ids = sandbox.mutate(25, seed=9)
    sandbox.add_fields("receivable", {"settlement": "object", "settled_at": "date-time"}, ids=ids)
    sandbox.add_fields("entry", {"approved_by": "string"}, ids=ids)
    sandbox.add_fields("change", {"rule": "integer"}, ids=ids)
    return ids


def _read_postgres(dsn: str, schema: str) -> tuple[dict, dict]:
    """(id -> extra_fields, history key -> (entry_extra_fields, change_extra_fields))."""
    with psycopg.connect(dsn) as conn:
        receivables: dict[str, t.Any] = dict(
            conn.execute(RECEIVABLES.format(schema=schema)).fetchall()
        )
        history = {
            tuple(row[:4]): tuple(row[4:])
            for row in conn.execute(HISTORY.format(schema=schema)).fetchall()
        }
    return receivables, history


def test_meltano_run_into_postgres_keeps_new_fields_full_and_incremental(postgres, tmp_path):
    schema = "kapwork_undeclared"
    dsn = conninfo(postgres)

    def read() -> tuple[dict, dict]:
        return _read_postgres(dsn, schema)

    def typed() -> list[tuple]:
        """The README's SQL, on this test's schema."""
        sql = readme_block("When the API changes", "sql", "extra_fields->>")
        with psycopg.connect(dsn) as conn:
            return conn.execute(sql.replace("kapwork.", f"{schema}.")).fetchall()

    with Sandbox(receivables=300, seed=21, api_key=API_KEY) as sandbox:
        env = meltano_env(sandbox, tmp_path, **target_postgres_env(postgres, schema))
        _evolve_before_the_first_run(sandbox)
        first = meltano("run", "tap-kapwork", "target-postgres", env=env)
        truth = sandbox.truth()
        carrying = _check(*read(), truth)
        assert 50 < carrying < 150
        # The README's filter: target-postgres writes JSON null for an absent object.
        with psycopg.connect(dsn) as conn:
            ((objects, json_nulls),) = conn.execute(
                "select count(*) filter (where jsonb_typeof(extra_fields) = 'object'), "
                f"count(*) filter (where extra_fields = 'null') from {schema}.receivables"
            ).fetchall()
        assert (objects, json_nulls) == (carrying, len(truth) - carrying)
        # The README's typed columns: the same values, typed by PostgreSQL.
        by_id = {r["id"]: r for r in truth}
        for rid, reference, paid_at, days_late in typed():
            record = by_id[rid]
            assert reference == record.get("payment_reference")
            assert days_late == record.get("days_late")
            if "paid_at" in record:
                assert paid_at == parse_timestamp(record["paid_at"])
        assert "The API sent receivables.payment_reference (a key of a receivable)" in (
            first.stdout + first.stderr
        )

        ids = _evolve_before_the_incremental_run(sandbox)
        second = meltano("run", "tap-kapwork", "target-postgres", env=env)
        before, truth = truth, sandbox.truth()
        receivables, history = read()
        _check(receivables, history, truth, before)
        for rid in ids:
            assert {"settlement", "settled_at"} <= receivables[rid].keys()
        # Each changed receivable's new entry carries the fields seen for the first time.
        newest = {r["id"]: r["history"][0]["changed_at"] for r in truth if r["id"] in ids}
        new_rows = [
            values
            for (rid, changed_at, _, _), values in history.items()
            if rid in ids and changed_at == _naive_utc(newest[rid])
        ]
        assert len(new_rows) >= len(ids)
        for entry, change in new_rows:
            assert entry is not None
            assert "approved_by" in entry
            assert change is not None
            assert "rule" in change
        assert "The API sent receivables.history[].approved_by (a key of a history entry)" in (
            second.stdout + second.stderr
        )
        requests = [r for r in sandbox.requests if r["path"] == "/v1/receivables"]
        assert requests[-1]["params"]["verified_since"] != ["all"], "run 2 is incremental"

        # The README's way to load a new field everywhere at once: a run without state.
        meltano("run", "--full-refresh", "tap-kapwork", "target-postgres", env=env)
        _check(*read(), sandbox.truth())
    with psycopg.connect(dsn) as conn:
        types = dict(
            conn.execute(
                "select table_name || '.' || column_name, data_type "
                "from information_schema.columns where table_schema = %s",
                (schema,),
            ).fetchall()
        )
    for column in (
        "receivables.extra_fields",
        "receivable_history.entry_extra_fields",
        "receivable_history.change_extra_fields",
    ):
        assert types[column] == "jsonb"


@pytest.mark.parametrize("loader", ["target-duckdb"])
def test_meltano_run_into_duckdb_keeps_new_fields(loader, tmp_path):
    database = tmp_path / "warehouse.duckdb"

    def read() -> tuple[dict, dict]:
        with duckdb.connect(str(database), read_only=True) as db:
            receivables = {
                rid: json.loads(extra) if extra is not None else None
                for rid, extra in db.sql(
                    "select id, extra_fields from kapwork.receivables"
                ).fetchall()
            }
            history = {
                tuple(row[:4]): tuple(json.loads(v) if v is not None else None for v in row[4:])
                for row in db.sql(HISTORY.format(schema="kapwork")).fetchall()
            }
        return receivables, history

    with Sandbox(receivables=200, seed=22, api_key=API_KEY) as sandbox:
        env = meltano_env(sandbox, tmp_path, TARGET_DUCKDB_PATH=str(database))
        _evolve_before_the_first_run(sandbox)
        meltano("run", "tap-kapwork", loader, env=env)
        assert _check(*read(), sandbox.truth()) > 20
        before = sandbox.truth()
        _evolve_before_the_incremental_run(sandbox)
        meltano("run", "tap-kapwork", loader, env=env)
        _check(*read(), sandbox.truth(), before)


def test_tables_an_older_tap_created_get_the_new_columns(postgres, tmp_path):
    """A warehouse loaded before the catch-alls existed (here: deselected, which also
    names what was not kept): target-postgres adds the columns on the next run."""
    schema = "kapwork_upgraded"
    dsn = conninfo(postgres)
    with Sandbox(receivables=150, seed=23, api_key=API_KEY) as sandbox:
        _evolve_before_the_first_run(sandbox)
        env = meltano_env(sandbox, tmp_path, **target_postgres_env(postgres, schema))
        older = {
            **env,
            "TAP_KAPWORK__SELECT": json.dumps(
                [
                    "receivables.*",
                    "receivable_history.*",
                    "!receivables.extra_fields",
                    "!receivable_history.entry_extra_fields",
                    "!receivable_history.change_extra_fields",
                ]
            ),
        }
        first = meltano("run", "tap-kapwork", "target-postgres", env=older)
        assert (
            "receivables.payment_reference (a key of a receivable)" in first.stderr + first.stdout
        )
        assert "its values were NOT kept, because receivables.extra_fields is deselected" in (
            first.stderr + first.stdout
        )
        with psycopg.connect(dsn) as conn:
            columns = {
                row[0]
                for row in conn.execute(
                    "select table_name || '.' || column_name from information_schema.columns "
                    "where table_schema = %s",
                    (schema,),
                )
            }
        assert "receivables.extra_fields" not in columns
        assert "receivables.metadata" in columns

        meltano("run", "--full-refresh", "tap-kapwork", "target-postgres", env=env)
        truth = sandbox.truth()
    assert _check(*_read_postgres(dsn, schema), truth) > 20
