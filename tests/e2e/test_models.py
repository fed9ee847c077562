"""dbt build on what the loaders wrote (DuckDB and PostgreSQL), checked against the truth.

A realistic sandbox goes through the tap into each warehouse, `dbt build` runs with the
utility Meltano installed, and the models are compared with values computed in Python from
the sandbox (models_expected.py). Then the sandbox changes, the load is incremental, and the
rebuilt models must follow.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import typing as t
from pathlib import Path

import duckdb
import psycopg
import pytest
from e2e_helpers import ROOT, loader, meltano, meltano_env, pipe
from helpers import API_KEY, tap_config
from models_expected import aging_totals, debtor_medians, spells

from kapwork_sandbox import Sandbox

# dbt computes day differences from whole seconds; the truth has milliseconds.
DAYS = 2 / 86400
MODELS = (
    "receivables_current",
    "receivable_status_changes",
    "receivable_status_spells",
    "debtor_payment_performance",
    "aging_by_debtor",
)


def dbt(adapter: str, command: str, *args: str, env: dict[str, str], work: Path) -> str:
    """`dbt <command>` with the utility's own executable; returns its output (fails on errors).

    `work` holds dbt's target and logs; reusing it across builds lets dbt parse partially.
    """
    executable = ROOT / ".meltano" / "utilities" / f"dbt-{adapter}" / "venv" / "bin" / "dbt"
    if not executable.exists():
        pytest.fail(f"{executable} is missing: run `make test` (it runs `meltano install`).")
    proc = subprocess.run(
        [
            str(executable),
            command,
            *args,
            "--project-dir",
            str(ROOT / "transform"),
            "--profiles-dir",
            str(ROOT / "transform" / "profiles" / adapter),
            "--target-path",
            str(work / f"dbt-target-{adapter}"),
        ],
        env={**os.environ, "DBT_LOG_PATH": str(work / "dbt-logs"), **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout


def dbt_build(adapter: str, env: dict[str, str], work: Path, as_of: dt.date) -> str:
    """`dbt build` as of a date; returns its output (fails on errors)."""
    vars_ = json.dumps({"as_of_date": as_of.isoformat()})
    output = dbt(adapter, "build", "--vars", vars_, env=env, work=work)
    assert "ERROR=0" in output
    return output


def check_models(query: t.Callable[[str], list[tuple]], truth: list[dict], as_of: dt.date) -> None:
    """The models hold what Python computes from the truth."""
    # spells: every receivable's, in order, with entered_at / left_at and durations
    expected = {r["id"]: spells(r) for r in truth}
    rows = query(
        "select receivable_id, spell_number, status, entered_at, left_at, duration_days "
        "from receivable_status_spells order by receivable_id, spell_number"
    )
    loaded: dict[str, list[tuple]] = {}
    for rid, _, status, entered, left, duration in rows:
        loaded.setdefault(rid, []).append((status, entered, left, duration))
    assert set(loaded) == set(expected)
    end_of_day = dt.datetime.combine(as_of, dt.time(23, 59, 59))
    for rid, want in expected.items():
        got = loaded[rid]
        assert [(s, e, lft) for s, e, lft, _ in got] == [
            (w.status, w.entered_at, w.left_at) for w in want
        ], rid
        for (*_, duration), spell in zip(got, want, strict=True):
            until = spell.left_at or end_of_day
            assert duration == pytest.approx(
                (until - spell.entered_at).total_seconds() / 86400, abs=DAYS
            )

    # aging: open amount per currency and bucket
    got_aging = {
        (currency, bucket): int(cents)
        for currency, bucket, cents in query(
            "select currency, aging_bucket, sum(open_amount_cents) from aging_by_debtor "
            "group by currency, aging_bucket"
        )
    }
    assert got_aging == aging_totals(truth, as_of)

    # per debtor and currency: medians, share disputed, paid amounts
    want_debtors = debtor_medians(truth)
    got_debtors = {
        (debtor, currency): rest
        for debtor, currency, *rest in query(
            "select debtor_id, currency, receivables, median_days_to_approved, "
            "median_days_to_paid, share_ever_disputed, paid_amount "
            "from debtor_payment_performance"
        )
    }
    assert set(got_debtors) == set(want_debtors)
    for key, row in want_debtors.items():
        count, approved, paid, disputed, paid_amount = got_debtors[key]
        assert count == row["receivables"]
        for got_value, want_value in (
            (approved, row["median_days_to_approved"]),
            (paid, row["median_days_to_paid"]),
        ):
            if want_value is None:
                assert got_value is None
            else:
                assert float(got_value) == pytest.approx(want_value, abs=DAYS)
        assert float(disputed) == pytest.approx(row["share_ever_disputed"])
        assert round(float(paid_amount) * 100) == row["paid_cents"]

    # status changes: one row per transition in the truth
    transitions = sum("status" in entry["changes"] for r in truth for entry in r["history"])
    assert query("select count(*) from receivable_status_changes") == [(transitions,)]
    assert query("select count(*) from receivables_current") == [(len(truth),)]


def load_build_check(
    sandbox: Sandbox,
    load: t.Callable[[dict | None], dict],
    build: t.Callable[[], str],
    query: t.Callable[[str], list[tuple]],
    as_of: dt.date,
) -> dict[str, int]:
    """Full load, build, check; change the sandbox; incremental load, rebuild, check."""
    truth = sandbox.truth()
    state = load(None)
    build()
    check_models(query, truth, as_of)
    before = query("select count(*) from receivable_status_spells")[0][0]

    sandbox.mutate(40, seed=5)
    sandbox.insert(5)
    truth = sandbox.truth()
    load(state)
    output = build()
    check_models(query, truth, as_of)
    assert query("select count(*) from receivable_status_spells")[0][0] > before
    print("\n" + next(line for line in output.splitlines() if "Done." in line))
    return {model: query(f"select count(*) from {model}")[0][0] for model in MODELS}


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


@pytest.fixture(scope="module")
def dbt_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dbt target directory per module: later builds parse only what changed."""
    return tmp_path_factory.mktemp("dbt")


@pytest.fixture
def realistic_sandbox() -> t.Iterator[Sandbox]:
    with Sandbox(receivables=300, seed=11, profile="realistic") as sandbox:
        yield sandbox


def test_models_on_duckdb(realistic_sandbox, dbt_work, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    config = tmp_path / "target-duckdb.json"
    config.write_text(json.dumps({"path": str(database), "default_target_schema": "kapwork"}))
    as_of = today()

    def load(state: dict | None) -> dict:
        return pipe(tap_config(realistic_sandbox), loader("target-duckdb"), config, state=state)

    def build() -> str:
        env = {"DBT_DUCKDB_PATH": str(database), "DBT_DUCKDB_SOURCE_SCHEMA": "kapwork"}
        return dbt_build("duckdb", env, dbt_work, as_of)

    def query(sql: str) -> list[tuple]:
        # dbt's models live in the `analytics` schema of the same file the loader writes.
        with duckdb.connect(str(database), read_only=True) as db:
            db.sql("use analytics")
            return db.sql(sql).fetchall()

    counts = load_build_check(realistic_sandbox, load, build, query, as_of)
    print("DuckDB model rows:", counts)


def test_models_on_postgres(realistic_sandbox, postgres, dbt_work, tmp_path):
    source, target = "kapwork_dbt", "analytics_dbt"
    config = tmp_path / "target-postgres.json"
    config.write_text(json.dumps({**postgres, "default_target_schema": source}))
    conninfo = " ".join(
        f"{k}={v}"
        for k, v in {**postgres, "dbname": postgres["database"]}.items()
        if k != "database" and v != ""
    )
    as_of = today()

    def load(state: dict | None) -> dict:
        return pipe(tap_config(realistic_sandbox), loader("target-postgres"), config, state=state)

    def build() -> str:
        env = {
            "DBT_POSTGRES_HOST": postgres["host"],
            "DBT_POSTGRES_PORT": str(postgres["port"]),
            "DBT_POSTGRES_USER": postgres["user"],
            "DBT_POSTGRES_PASSWORD": postgres["password"],
            "DBT_POSTGRES_DATABASE": postgres["database"],
            "DBT_POSTGRES_SOURCE_SCHEMA": source,
            "DBT_POSTGRES_TARGET_SCHEMA": target,
        }
        return dbt_build("postgres", env, dbt_work, as_of)

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(conninfo, options=f"-c search_path={target}") as conn:
            return conn.execute(sql).fetchall()

    counts = load_build_check(realistic_sandbox, load, build, query, as_of)
    print("PostgreSQL model rows:", counts)
    # NB: target-postgres 0.8.1 stores history values (string | integer | boolean | null) as
    # below; stg_kapwork__receivable_history reads either text or jsonb.
    types = query(
        "select column_name, data_type from information_schema.columns "
        f"where table_schema = '{source}' and table_name = 'receivable_history' "
        "and column_name in ('from_value', 'to_value') order by column_name"
    )
    print("PostgreSQL history value types:", types)
    assert {data_type for _, data_type in types} <= {"jsonb", "text", "character varying"}


@pytest.mark.parametrize("adapter", ["duckdb", "postgres"])
def test_meltano_run_with_dbt_build(adapter, request, tmp_path):
    """The README's commands: `meltano run tap-kapwork target-<adapter> dbt-<adapter>:build`.

    Only the loader's variables are set: dbt must find the tables through them.
    """
    with Sandbox(receivables=120, seed=31, api_key=API_KEY, profile="realistic") as sandbox:
        env = meltano_env(
            sandbox,
            tmp_path,
            # dbt's target/ and logs/ of its own: not transform/target, which the other
            # adapter's run (another pytest-xdist worker) writes at the same time.
            DBT_TARGET_PATH=str(tmp_path / "dbt-target"),
            DBT_LOG_PATH=str(tmp_path / "dbt-logs"),
        )
        if adapter == "duckdb":
            database = tmp_path / "warehouse.duckdb"
            env["TARGET_DUCKDB_PATH"] = str(database)
        else:
            postgres = request.getfixturevalue("postgres")
            env.update(
                {
                    "TARGET_POSTGRES_HOST": postgres["host"],
                    "TARGET_POSTGRES_PORT": str(postgres["port"]),
                    "TARGET_POSTGRES_USER": postgres["user"],
                    "TARGET_POSTGRES_PASSWORD": postgres["password"],
                    "TARGET_POSTGRES_DATABASE": postgres["database"],
                    "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "kapwork_meltano",
                    "DBT_POSTGRES_TARGET_SCHEMA": "analytics_meltano",
                }
            )
        proc = meltano("run", "tap-kapwork", f"target-{adapter}", f"dbt-{adapter}:build", env=env)
        truth = sandbox.truth()
    output = proc.stdout + proc.stderr
    assert "ERROR=0" in output
    sql = "select count(*), count(distinct currency) from {}.receivables_current"
    if adapter == "duckdb":
        with duckdb.connect(str(database), read_only=True) as db:
            counts = db.sql(sql.format("analytics")).fetchone()
    else:
        conninfo = " ".join(
            f"{k}={v}"
            for k, v in {**postgres, "dbname": postgres["database"]}.items()
            if k != "database" and v != ""
        )
        with psycopg.connect(conninfo) as conn:
            counts = conn.execute(sql.format("analytics_meltano")).fetchone()
    assert counts == (len(truth), len({r["currency"] for r in truth}))
