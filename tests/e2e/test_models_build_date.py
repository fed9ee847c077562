"""The models' build date is UTC's on every adapter, whatever the session's time zone.

`current_date` is the session's date: a day off UTC's for hours every day where the
session's zone is not UTC. Here the session runs in a zone whose date is not UTC's right
now, and `as_of_date()` (the build date without --vars) must still be UTC's, and
`as_of_timestamp()` (what current spells are measured to) UTC's time. Snowflake's default
zone is checked on the emulator (test_models_snowflake.py).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from test_models import dbt, today
from test_models_snowflake import zone_on_another_day


def show_as_of(adapter: str, env: dict[str, str], work: Path) -> tuple[str, dt.datetime]:
    """`dbt show` of the build date and instant with the utility's own dbt."""
    select = "select {{ as_of_date() }} as d, {{ as_of_timestamp() }} as ts"
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
            [row] = json.loads(data["preview"])
            return str(row["d"]), dt.datetime.fromisoformat(str(row["ts"]))
    raise AssertionError(output[-3000:])


def check_utc(as_of: tuple[str, dt.datetime], zone: str) -> None:
    """The build date is UTC's, and so is the instant current spells are measured to."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    date, instant = as_of
    assert date == today().isoformat(), zone
    assert abs(instant - now) < dt.timedelta(minutes=10), (instant, now, zone)


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
    check_utc(show_as_of("postgres", env, tmp_path), zone)


def test_build_date_is_utc_on_duckdb(tmp_path):
    # DuckDB takes its TimeZone from TZ. NB: duckdb 1.1.3's current_date was seen to be
    # UTC's whatever TimeZone says, but cast(now() as timestamp) is the zone's wall time.
    zone = zone_on_another_day(dt.datetime.now(dt.timezone.utc))
    env = {"TZ": zone, "DBT_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}
    check_utc(show_as_of("duckdb", env, tmp_path), zone)
