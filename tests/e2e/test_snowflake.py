"""tap-kapwork | target-snowflake (the pinned 0.20.4) into fakesnow, a Snowflake emulator.

No Snowflake account is reachable from here. fakesnow runs the SQL the target writes on
DuckDB; tests/e2e/snowflake_runner.py says which staging steps it stands in for. A full
and an incremental run load both streams; the rows, types and upserts are read back.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import typing as t
from collections import Counter
from pathlib import Path

import pytest
from e2e_helpers import PLUGINS, pipe
from helpers import tap_config

from kapwork_sandbox.testing import as_emitted, expected_history_rows
from tap_kapwork.timestamps import parse_timestamp

PYTHON = PLUGINS / "target-snowflake" / "venv" / "bin" / "python"
RUNNER = Path(__file__).with_name("snowflake_runner.py")
TARGET_CONFIG = {
    "account": "fakesnow",
    "user": "KAPWORK_LOADER",
    "password": "unused-by-fakesnow",
    "database": "RAW",
    "default_target_schema": "KAPWORK",
}


def _check_emulator() -> None:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run `make test` (it runs `meltano install`) first.")
    probe = subprocess.run(
        [str(PYTHON), "-c", "import fakesnow, target_snowflake"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"fakesnow is not next to target-snowflake: run `make meltano`.\n{probe.stderr}"
        )


def _utc(value: str) -> dt.datetime:
    return parse_timestamp(value).astimezone(dt.timezone.utc).replace(tzinfo=None)


def _text(value: t.Any) -> str | None:
    """A history value as `$1:to_value::VARCHAR` renders it."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def emulated_target(tmp_path: Path) -> tuple[str, Path, Path]:
    """target-snowflake into fakesnow: (the executable, its config, the databases' folder)."""
    _check_emulator()
    db_dir = tmp_path / "fakesnow"
    db_dir.mkdir()
    target = tmp_path / "target-snowflake"
    target.write_text(f'#!/bin/sh\nexec "{PYTHON}" "{RUNNER}" "{db_dir}" load "$@"\n')
    target.chmod(0o755)
    target_config = tmp_path / "target-snowflake.json"
    target_config.write_text(json.dumps(TARGET_CONFIG))
    return str(target), target_config, db_dir


def query_loaded(db_dir: Path, *statements: str) -> list[list[list[t.Any]]]:
    """Rows of each statement, run on the emulated databases in `db_dir`."""
    proc = subprocess.run(
        [str(PYTHON), str(RUNNER), str(db_dir), "query", json.dumps(statements)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return t.cast(list, json.loads(proc.stdout.splitlines()[-1]))


def test_into_snowflake_emulator_full_then_incremental(e2e_sandbox, tmp_path):
    target, target_config, db_dir = emulated_target(tmp_path)

    def query(*statements: str) -> list[list[list[t.Any]]]:
        return query_loaded(db_dir, *statements)

    state = pipe(tap_config(e2e_sandbox), target, target_config)
    first = _read(query)
    _check(e2e_sandbox.truth(), first)

    changed = e2e_sandbox.mutate(60)
    inserted = e2e_sandbox.insert(15)
    # Fields the docs do not list, seen for the first time: kept in extra_fields.
    e2e_sandbox.add_fields(
        "receivable", {"payment_reference": "string", "tags": "array"}, ids=changed
    )
    pipe(tap_config(e2e_sandbox), target, target_config, state=state)
    second = _read(query)
    truth = e2e_sandbox.truth()
    _check(truth, second)
    (extras,) = query("select id, extra_fields from RECEIVABLES where extra_fields is not null")
    assert len(second["receivables"]) == len(first["receivables"]) + len(inserted) == 1515
    by_id = {r["id"]: r for r in truth}
    for rid in changed:  # upserted in place: the MERGE updated the row
        assert second["receivables"][rid][:2] == (by_id[rid]["status"], by_id[rid]["amount_cents"])
    assert any(first["receivables"][rid] != second["receivables"][rid] for rid in changed)
    assert {rid: json.loads(value) for rid, value in extras} == {
        rid: as_emitted(by_id[rid])["extra_fields"] for rid in changed
    }

    types = second["types"]
    assert types["RECEIVABLES.AMOUNT_CENTS"] == ("NUMBER", 38, 0)  # an integer type
    for column in (
        "RECEIVABLES.UPDATED_AT",
        "RECEIVABLES.DETECTED_AT",
        "RECEIVABLE_HISTORY.CHANGED_AT",
    ):
        assert types[column][0] == "TIMESTAMP_NTZ", column
    assert types["RECEIVABLES.DUE_DATE"][0] == "DATE"
    for column in (
        "RECEIVABLES.VENDOR",
        "RECEIVABLES.DEBTOR",
        "RECEIVABLES.METADATA",
        "RECEIVABLES.EXTRA_FIELDS",
        "RECEIVABLE_HISTORY.ENTRY_EXTRA_FIELDS",
        "RECEIVABLE_HISTORY.CHANGE_EXTRA_FIELDS",
    ):
        assert types[column][0] == "VARIANT", column
    print(
        f"\nSnowflake emulator: {len(second['receivables'])} receivables, "
        f"{sum(second['history'].values())} receivable_history rows"
    )


def _read(query: t.Callable[..., list]) -> dict[str, t.Any]:
    receivables, history, counts, types = query(
        "select id, status, amount_cents, updated_at, due_date, vendor:name::varchar, "
        "metadata from RECEIVABLES",
        "select receivable_id, changed_at, field, from_value, to_value from RECEIVABLE_HISTORY",
        "select count(*), count(distinct id) from RECEIVABLES",
        "select table_name || '.' || column_name, data_type, numeric_precision, numeric_scale "
        "from information_schema.columns where table_schema = 'KAPWORK'",
    )
    ((total, distinct),) = counts
    assert total == distinct, "duplicate primary keys"
    return {
        "receivables": {row[0]: tuple(row[1:]) for row in receivables},
        "history": Counter(
            (rid, dt.datetime.fromisoformat(changed_at), field, from_value, to_value)
            for rid, changed_at, field, from_value, to_value in history
        ),
        "types": {row[0]: tuple(row[1:]) for row in types},
    }


def _check(truth: list[dict], loaded: dict[str, t.Any]) -> None:
    receivables = loaded["receivables"]
    assert set(receivables) == {r["id"] for r in truth}
    for rec in truth:
        status, amount, updated_at, due_date, vendor_name, metadata = receivables[rec["id"]]
        assert (status, amount) == (rec["status"], rec["amount_cents"])  # exact, beyond 2^31
        assert dt.datetime.fromisoformat(updated_at) == _utc(rec["updated_at"])
        assert due_date == rec["due_date"]
        assert vendor_name == rec["vendor"]["name"]
        assert json.loads(metadata) == rec["metadata"]
    amounts = [r["amount_cents"] for r in truth]
    assert max(amounts) > 2**31
    assert min(amounts) < 0
    expected = Counter(
        (rid, _utc(changed_at), field, _text(old), _text(new))
        for rid, changed_at, field, old, new in expected_history_rows(truth)
    )
    assert loaded["history"] == expected  # every change once, values queryable as text
