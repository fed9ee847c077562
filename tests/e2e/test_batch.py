"""BATCH and RECORD loads into PostgreSQL are identical, and both equal the sandbox truth.

target-postgres runs with the project's settings from meltano.yml (use_copy on,
validate_records off, no _sdc_ columns): the loader checks nothing, so what it loaded is
compared with the truth field by field.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import psycopg
import yaml
from e2e_helpers import ROOT, loader, pipe
from helpers import tap_config
from psycopg.rows import dict_row

from kapwork_sandbox.testing import expected_history_rows
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from pathlib import Path

    from kapwork_sandbox import Sandbox


def _project_settings() -> dict[str, t.Any]:
    """target-postgres' config in meltano.yml, without the connection settings."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres"]
    connection = {"host", "port", "user", "password", "database", "default_target_schema"}
    settings = {k: v for k, v in plugin["config"].items() if k not in connection}
    assert settings["validate_records"] is False
    assert settings["use_copy"] is True
    return settings


def _conninfo(postgres: dict) -> str:
    params = {**postgres, "dbname": postgres["database"]}
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "database" and v != "")


def _rows(conninfo: str, schema: str, table: str, order: str) -> list[dict]:
    """Every row, every column but the loader's own _sdc_ metadata."""
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        rows = conn.execute(f"select * from {schema}.{table} order by {order}").fetchall()
    return [{k: v for k, v in row.items() if not k.startswith("_sdc_")} for row in rows]


def _load(conninfo: str, schema: str) -> dict[str, list[dict]]:
    return {
        "receivables": _rows(conninfo, schema, "receivables", "id"),
        "receivable_history": _rows(
            conninfo, schema, "receivable_history", "receivable_id, changed_at, field"
        ),
    }


def _plain(value: t.Any) -> t.Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _assert_equals_truth(loaded: dict[str, list[dict]], truth: list[dict]) -> None:
    receivables = {row["id"]: row for row in loaded["receivables"]}
    assert len(receivables) == len(loaded["receivables"]) == len(truth)
    timestamps = ("detected_at", "updated_at", "estimated_next_update_at")
    for rec in truth:
        row = receivables[rec["id"]]
        for field, value in rec.items():
            if field == "history":
                continue
            if field in timestamps and value is not None:
                value = parse_timestamp(value).replace(tzinfo=None)
            assert _plain(row[field]) == value, (rec["id"], field)
    history = {
        (r["receivable_id"], _plain(r["changed_at"]), r["field"])
        for r in loaded["receivable_history"]
    }
    expected = {
        (rid, parse_timestamp(changed_at).replace(tzinfo=None), field)
        for rid, changed_at, field, _, _ in expected_history_rows(truth)
    }
    assert len(loaded["receivable_history"]) == len(expected)
    assert history == expected


def test_batch_and_record_loads_are_identical(
    e2e_sandbox: Sandbox, postgres: dict, tmp_path: Path
) -> None:
    conninfo = _conninfo(postgres)
    target = loader("target-postgres")
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": (tmp_path / "batches").as_uri()},
        "batch_size": 5000,
    }
    configs = {}
    for name in ("by_record", "by_batch"):
        configs[name] = tmp_path / f"{name}.json"
        configs[name].write_text(
            json.dumps({**postgres, **_project_settings(), "default_target_schema": name})
        )

    states = {
        "by_record": pipe(tap_config(e2e_sandbox), target, configs["by_record"]),
        "by_batch": pipe(
            tap_config(e2e_sandbox, batch_config=batch_config), target, configs["by_batch"]
        ),
    }
    assert list((tmp_path / "batches").iterdir()), "the BATCH run wrote no files"
    truth = e2e_sandbox.truth()
    by_record, by_batch = _load(conninfo, "by_record"), _load(conninfo, "by_batch")
    assert by_batch == by_record
    _assert_equals_truth(by_record, truth)

    # Incremental, from each run's own STATE: updates land in place in both.
    e2e_sandbox.mutate(40)
    e2e_sandbox.insert(10)
    pipe(tap_config(e2e_sandbox), target, configs["by_record"], state=states["by_record"])
    pipe(
        tap_config(e2e_sandbox, batch_config=batch_config),
        target,
        configs["by_batch"],
        state=states["by_batch"],
    )
    truth = e2e_sandbox.truth()
    by_record, by_batch = _load(conninfo, "by_record"), _load(conninfo, "by_batch")
    assert by_batch == by_record
    _assert_equals_truth(by_record, truth)
