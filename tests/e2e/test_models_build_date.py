"""The models' build date is UTC's on every adapter, whatever the session's time zone.

`current_date` is the session's date: a day off UTC's for hours every day where the
session's zone is not UTC. Here the session runs in a zone whose date is not UTC's right
now, and `as_of_date()` (the build date without --vars) must still be UTC's. Snowflake's
default zone is checked on the emulator (test_models_snowflake.py).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from test_models import dbt, today
from test_models_snowflake import zone_on_another_day


def show_as_of_date(adapter: str, env: dict[str, str], work: Path) -> str:
    """`dbt show` of the build date with the utility's own dbt."""
    select = "select {{ as_of_date() }} as as_of_date"
    output = dbt(
        adapter,
        "show",
        "--inline",
        select,
        "--output",
        "json",
        "--log-format",
        "json",
        env=env,
        work=work,
    )
    for line in output.splitlines():
        data = json.loads(line)["data"]
        if "preview" in data:
            return str(json.loads(data["preview"])[0]["as_of_date"])
    raise AssertionError(output[-3000:])


def test_build_date_is_utc_on_postgres(postgres, tmp_path):
    zone = zone_on_another_day(dt.datetime.now(dt.timezone.utc))
    env = {
        "PGTZ": zone,  # libpq sets the session's TimeZone from it
        "DBT_POSTGRES_HOST": postgres["host"],
        "DBT_POSTGRES_PORT": str(postgres["port"]),
        "DBT_POSTGRES_USER": postgres["user"],
        "DBT_POSTGRES_PASSWORD": postgres["password"],
        "DBT_POSTGRES_DATABASE": postgres["database"],
    }
    assert show_as_of_date("postgres", env, tmp_path) == today().isoformat(), zone


def test_build_date_is_utc_on_duckdb(tmp_path):
    # NB: duckdb 1.1.3's current_date was seen to be UTC's whatever TimeZone says; the
    # macro does not rely on it.
    env = {"TZ": "Pacific/Kiritimati", "DBT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}
    assert show_as_of_date("duckdb", env, tmp_path) == today().isoformat()
