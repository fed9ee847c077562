"""The README's "Targets we test": each Singer loader, measured on the tap's real output.

For each loader: a full run of an edge-profile sandbox (with odd values set on a few
receivables), then 20 changes and 5 new receivables and an incremental run from the full
run's STATE, both compared with the sandbox truth; how the second run wrote (upsert:
one row per id; append: the first run's rows plus the second's; replace: only the
second's); what came back for each odd value; and, into a fresh destination, what a NUL
character did. The findings must equal docs/targets.json, from which
scripts/targets_table.py writes the README's table (a unit test compares the two).

`make targets-table` runs these with KAPWORK_TARGETS_OUT set: the findings are written
there instead of compared, then docs/targets.json and the README are rewritten.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import json
import os
import subprocess
import typing as t
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml
from e2e_helpers import ROOT, conninfo, loader
from helpers import API_KEY, run_tap, tap_config
from loader_venvs import loader_venv
from psycopg.rows import dict_row
from test_snowflake import PYTHON as SNOWFLAKE_PYTHON
from test_snowflake import RUNNER as SNOWFLAKE_RUNNER
from test_snowflake import TARGET_CONFIG as SNOWFLAKE_CONFIG
from test_snowflake import _check_emulator, query_loaded

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import expected_history_rows
from tap_kapwork.timestamps import parse_timestamp

MEASURED = ROOT / "docs" / "targets.json"
UTC = dt.timezone.utc
NUL = "\u0000"
# The odd values, each on a receivable of its own: field -> value.
OFFSET = "2026-03-01T10:00:00.123+02:00"  # 08:00:00.123 UTC
ODD: dict[str, dict[str, t.Any]] = {
    "large amount": {"amount_cents": 2**53 + 1},  # beyond a double's exact integers
    "negative amount": {"amount_cents": -(2**53 + 1)},
    "offset": {"estimated_next_update_at": OFFSET},
    "line breaks": {"po_number": "PO-1\nline 2\r\nline 3"},
    "tab": {"vendor_receivable_id": "INV\t42"},
    "empty string": {"po_number": ""},
    "JSON object": {"metadata": {"custom": {"cost_center": "CC-7", "tags": ["a", "b"]}, "r": 0.25}},
}


# --- the loaders ----------------------------------------------------------------------


@dataclass
class Destination:
    """Where one loader writes: its command, its config, and how to read its tables back."""

    command: list[str]
    config: dict[str, t.Any]
    read: t.Callable[[], dict[str, list[dict[str, t.Any]]]]
    types: t.Callable[[], dict[str, str]] = dict


def _pinned(name: str) -> tuple[str, dict[str, t.Any]]:
    """(version, config) of a loader in meltano.yml."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["loaders"] if p["name"] == name]
    package = plugin["pip_url"].split()[0]
    return package.split("==")[1], dict(plugin.get("config") or {})


def _postgres_rows(dsn: str, schema: str) -> dict[str, list[dict]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return {
            table: conn.execute(f"select * from {schema}.{table}").fetchall()
            for table in ("receivables", "receivable_history")
        }


def _postgres_types(dsn: str, schema: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = 'receivables'",
            (schema,),
        ).fetchall()
    return dict(rows)


def meltanolabs_postgres(request: pytest.FixtureRequest, work: Path, schema: str) -> Destination:
    postgres = request.getfixturevalue("postgres")
    _, project = _pinned("target-postgres")
    connection = {"host", "port", "user", "password", "database", "default_target_schema"}
    settings = {k: v for k, v in project.items() if k not in connection}
    dsn = conninfo(postgres)
    return Destination(
        [loader("target-postgres")],
        {**postgres, **settings, "default_target_schema": schema},
        lambda: _postgres_rows(dsn, schema),
        lambda: _postgres_types(dsn, schema),
    )


def pipelinewise_postgres(request: pytest.FixtureRequest, work: Path, schema: str) -> Destination:
    postgres = request.getfixturevalue("postgres")
    dsn = conninfo(postgres)
    config = {
        "host": postgres["host"],
        "port": postgres["port"],
        "user": postgres["user"],
        "password": postgres["password"] or "unused-with-trust-auth",
        "dbname": postgres["database"],
        "default_target_schema": schema,
    }
    return Destination(
        [loader_venv(*PIPELINEWISE)],
        config,
        lambda: _postgres_rows(dsn, schema),
        lambda: _postgres_types(dsn, schema),
    )


def target_duckdb(request: pytest.FixtureRequest, work: Path, schema: str) -> Destination:
    path = work / "warehouse.duckdb"

    def read() -> dict[str, list[dict]]:
        if not path.exists():
            return {"receivables": [], "receivable_history": []}
        with duckdb.connect(str(path), read_only=True) as db:
            out = {}
            for table in ("receivables", "receivable_history"):
                relation = db.sql(f"select * from {schema}.{table}")
                out[table] = [
                    dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()
                ]
            return out

    def types() -> dict[str, str]:
        with duckdb.connect(str(path), read_only=True) as db:
            rows = db.sql(
                "select column_name, data_type from information_schema.columns "
                f"where table_schema = '{schema}' and table_name = 'receivables'"
            ).fetchall()
        return dict(rows)

    return Destination(
        [loader("target-duckdb")],
        {"path": str(path), "default_target_schema": schema},
        read,
        types,
    )


def target_snowflake(request: pytest.FixtureRequest, work: Path, schema: str) -> Destination:
    _check_emulator()
    db_dir = work / "fakesnow"
    db_dir.mkdir()
    wrapper = work / "target-snowflake"
    wrapper.write_text(
        f'#!/bin/sh\nexec "{SNOWFLAKE_PYTHON}" "{SNOWFLAKE_RUNNER}" "{db_dir}" load "$@"\n'
    )
    wrapper.chmod(0o755)

    def query(*statements: str) -> list[list[list[t.Any]]]:
        return query_loaded(db_dir, *statements)

    def columns(table: str) -> str:
        return (
            "select lower(column_name), data_type from information_schema.columns "
            f"where table_schema = '{schema.upper()}' and table_name = '{table}' "
            "order by ordinal_position"
        )

    def read() -> dict[str, list[dict]]:
        out = {}
        for table in ("RECEIVABLES", "RECEIVABLE_HISTORY"):
            cols, rows = query(columns(table), f"select * from {schema.upper()}.{table}")
            names = [c[0] for c in cols]
            out[table.lower()] = [dict(zip(names, row, strict=True)) for row in rows]
        return out

    def types() -> dict[str, str]:
        (cols,) = query(columns("RECEIVABLES"))
        return dict(cols)

    return Destination(
        [str(wrapper)], {**SNOWFLAKE_CONFIG, "default_target_schema": schema.upper()}, read, types
    )


def _files(directory: Path, stream: str, suffix: str) -> list[Path]:
    """The loader's files of one stream (receivables*, not receivable_history*)."""
    return sorted(
        p
        for p in directory.glob(f"{stream}*{suffix}")
        if stream != "receivables" or not p.name.startswith("receivable_history")
    )


def target_jsonl(request: pytest.FixtureRequest, work: Path, schema: str) -> Destination:
    _, project = _pinned("target-jsonl")
    out = work / "jsonl"
    out.mkdir()

    def read() -> dict[str, list[dict]]:
        return {
            stream: [
                json.loads(line)
                for path in _files(out, stream, ".jsonl")
                for line in path.read_text().split("\n")
                if line
            ]
            for stream in ("receivables", "receivable_history")
        }

    return Destination([loader("target-jsonl")], {**project, "destination_path": str(out)}, read)


def meltanolabs_csv(request: pytest.FixtureRequest, work: Path, schema: str) -> Destination:
    out = work / "csv"
    out.mkdir()

    def read() -> dict[str, list[dict]]:
        rows: dict[str, list[dict]] = {}
        for stream in ("receivables", "receivable_history"):
            rows[stream] = []
            for path in _files(out, stream, ".csv"):
                with path.open(newline="", encoding="utf-8") as f:
                    rows[stream] += list(csv.DictReader(f))
        return rows

    return Destination([loader_venv(*CSV)], {"output_path": str(out)}, read)


PIPELINEWISE = ("pipelinewise-target-postgres", "2.1.2", "target-postgres")
CSV = ("meltanolabs-target-csv", "0.5.0", "target-csv")
# README order: name -> (how its version is known, how it is set up)
LOADERS: dict[str, tuple[t.Callable[[], str], t.Callable[..., Destination], str]] = {
    "meltanolabs-target-postgres": (
        lambda: _pinned("target-postgres")[0],
        meltanolabs_postgres,
        "meltano.yml `target-postgres`, the project's settings",
    ),
    "target-duckdb": (lambda: _pinned("target-duckdb")[0], target_duckdb, "meltano.yml"),
    "meltanolabs-target-snowflake": (
        lambda: _pinned("target-snowflake")[0],
        target_snowflake,
        "meltano.yml, into the fakesnow emulator",
    ),
    "target-jsonl": (lambda: _pinned("target-jsonl")[0], target_jsonl, "meltano.yml"),
    "meltanolabs-target-csv": (lambda: CSV[1], meltanolabs_csv, "its own virtualenv, defaults"),
    "pipelinewise-target-postgres": (
        lambda: PIPELINEWISE[1],
        pipelinewise_postgres,
        "its own virtualenv, defaults",
    ),
}


# --- runs and measures ----------------------------------------------------------------


@dataclass
class Load:
    returncode: int
    stderr: str
    emitted: int  # receivables RECORDs the tap wrote
    state: dict | None


def load(sandbox: Sandbox, destination: Destination, work: Path, state: dict | None) -> Load:
    """tap-kapwork | loader, the tap's output handed over as a file (as a pipe would)."""
    run = run_tap(tap_config(sandbox), state=state)
    config = work / f"loader-{len(list(work.glob('loader-*.json')))}.json"
    config.write_text(json.dumps(destination.config))
    proc = subprocess.run(
        [*destination.command, "--config", str(config)],
        input=run.stdout,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=work,
    )
    return Load(proc.returncode, proc.stderr, len(run.records("receivables")), run.state)


def _instant(value: t.Any) -> dt.datetime | None:
    """A loaded date-time as a UTC instant (naive values taken as UTC)."""
    if value in (None, ""):
        return None
    moment = value if isinstance(value, dt.datetime) else parse_timestamp(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _history_keys(rows: list[dict]) -> Counter:
    return Counter((r["receivable_id"], _instant(r["changed_at"]), r["field"]) for r in rows)


def _truth_history(truth: list[dict]) -> Counter:
    return Counter(
        (rid, _instant(changed_at), field)
        for rid, changed_at, field, _, _ in expected_history_rows(truth)
    )


def compare(truth: list[dict], loaded: dict[str, list[dict]], odd_ids: set[str]) -> str:
    """'= truth' or what differs: one row per id, status and amount, history keys."""
    problems = []
    rows = loaded["receivables"]
    latest = {str(r["id"]): r for r in rows}  # the last row of an id (files: in order)
    if set(latest) != {r["id"] for r in truth}:
        problems.append(f"{len(latest)} of {len(truth)} ids")
    wrong = [
        r["id"]
        for r in truth
        if r["id"] in latest
        and r["id"] not in odd_ids
        and (
            latest[r["id"]]["status"] != r["status"]
            or int(latest[r["id"]]["amount_cents"]) != r["amount_cents"]
        )
    ]
    if wrong:
        problems.append(f"{len(wrong)} receivables with other values")
    duplicates = len(rows) - len(latest)
    history, expected = _history_keys(loaded["receivable_history"]), _truth_history(truth)
    if set(history) != set(expected):
        problems.append(f"history {len(set(history) & set(expected))} of {len(expected)} changes")
    extra = sum(history.values()) - len(history)
    if problems:
        return "; ".join(problems)
    if duplicates or extra:
        older = f"{duplicates} older receivable rows" + (f", {extra} history rows" if extra else "")
        return f"latest row per id = truth, {older} kept"
    return "= truth"


def how_it_writes(first: int, second: Load, after: int, truth: int) -> str:
    if after == truth:
        return "upsert"
    if after == first + second.emitted:
        return "append"
    if after == second.emitted:
        return "replace"
    return f"{after} rows after {first} + {second.emitted}"


def _describe_text(sent: str, got: t.Any) -> str:
    if got == sent:
        return "kept"
    if got is None:
        return "NULL"
    escaped = sent.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if got == escaped:
        return "written as the characters `\\n`, `\\r`, `\\t`"
    return f"became {got!r}"


def describe_odd(name: str, sent: t.Any, got: t.Any, column_type: str) -> str:
    """What one odd value came back as."""
    kind = f"{column_type}, " if column_type else ""
    if name.endswith("amount"):
        if isinstance(got, int) and got == sent:
            return f"{kind}exact"
        if isinstance(got, str) and got == str(sent):
            return f"{kind}exact (text)"
        return f"{kind}became {got!r}"
    if name == "offset":
        instant = parse_timestamp(OFFSET).astimezone(UTC)
        if got == sent:
            return f"{kind}kept as sent (`+02:00`)"
        moment = got if isinstance(got, dt.datetime) else dt.datetime.fromisoformat(str(got))
        if moment.tzinfo is not None:
            same = moment.astimezone(UTC) == instant
            return f"{kind}{'the instant, with its zone' if same else f'became {got!r}'}"
        if moment == instant.replace(tzinfo=None):
            return f"{kind}the UTC instant"
        if moment == dt.datetime.fromisoformat(OFFSET).replace(tzinfo=None):
            return f"{kind}local clock time, zone dropped (2 h off)"
        return f"{kind}became {moment.isoformat()}"
    if name == "JSON object":
        shape, value = _object(got)
        if shape.startswith("Python"):
            return f"{kind}{shape}: `{value[:24]}…`"
        return f"{kind}{shape}, kept" if value == sent else f"{kind}{shape}, became {value!r}"
    return f"{kind}{_describe_text(sent, got)}"


def _object(value: t.Any) -> tuple[str, t.Any]:
    """(how an object was stored, the object): itself, JSON text, or Python's repr."""
    if not isinstance(value, str):
        return "object", value
    try:
        return "JSON text", json.loads(value)
    except ValueError:
        pass
    try:
        return "Python repr, not JSON", ast.literal_eval(value)
    except (ValueError, SyntaxError):
        python = value.startswith(("{'", "['"))
        return ("Python repr, not JSON" if python else "text"), value


def odd_findings(sandbox_ids: dict[str, str], loaded: dict[str, list[dict]], types: dict) -> dict:
    rows = {str(r["id"]): r for r in loaded["receivables"]}
    found = {}
    for name, fields in ODD.items():
        ((field, sent),) = fields.items()
        row = rows.get(sandbox_ids[name])
        found[name] = (
            "row missing"
            if row is None
            else describe_odd(name, sent, row.get(field), types.get(field, ""))
        )
    return found


def nul_finding(make: t.Callable[..., Destination], request: t.Any, work: Path, schema: str) -> str:
    """A fresh destination; NUL in po_number (text), vendor.name and metadata (objects)."""
    work.mkdir()
    destination = make(request, work, schema)
    with Sandbox(receivables=20, seed=9, api_key=API_KEY) as sandbox:
        text, vendor, meta = (r for r in sandbox.truth()[:3])
        sandbox.set_raw(text["id"], po_number=f"PO{NUL}1")
        sandbox.set_raw(vendor["id"], vendor={**vendor["vendor"], "name": f"V{NUL}1"})
        sandbox.set_raw(meta["id"], metadata={"note": f"M{NUL}1"})
        result = load(sandbox, destination, work, None)
    if result.returncode != 0:
        cause = (
            "PostgreSQL cannot store U+0000"
            if "0x00" in result.stderr or ("\\u0000" in result.stderr)
            else result.stderr.strip().splitlines()[-1][:80]
        )
        return f"the load fails ({cause})"
    rows = {str(r["id"]): r for r in destination.read()["receivables"]}
    if text["id"] not in rows:
        return "rows missing"

    def nested(value: t.Any, key: str) -> t.Any:
        return (_object(value)[1] or {}).get(key)

    got = {
        rows[text["id"]]["po_number"],
        nested(rows[vendor["id"]]["vendor"], "name"),
        nested(rows[meta["id"]]["metadata"], "note"),
    }
    if got == {"PO\ufffd1", "V\ufffd1", "M\ufffd1"}:
        return "replaced by U+FFFD"
    if got == {f"PO{NUL}1", f"V{NUL}1", f"M{NUL}1"}:
        return "kept"
    if got == {"PO1", "V1", "M1"}:
        return "removed"
    return f"became {sorted(map(repr, got))}"


@pytest.mark.parametrize("name", list(LOADERS))
def test_target(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    version, make, setup = LOADERS[name]
    work = tmp_path / "main"
    work.mkdir()
    # A schema per loader: both PostgreSQL loaders may run on one worker's server.
    schema = name.replace("-", "_")
    destination = make(request, work, schema)
    with Sandbox(receivables=200, seed=41, api_key=API_KEY) as sandbox:
        truth = sandbox.truth()
        odd_ids = {name: r["id"] for name, r in zip(ODD, truth[: len(ODD)], strict=False)}
        for odd, rid in odd_ids.items():
            sandbox.set_raw(rid, **ODD[odd])
        truth = sandbox.truth()

        first = load(sandbox, destination, work, None)
        assert first.returncode == 0, first.stderr[-3000:]
        loaded = destination.read()
        full = compare(truth, loaded, set(odd_ids.values()))
        odd_values = odd_findings(odd_ids, loaded, destination.types())
        first_rows = len(loaded["receivables"])

        others = [r["id"] for r in truth[len(ODD) :]]
        sandbox.mutate(0, ids=others[:20])
        sandbox.insert(5)
        truth = sandbox.truth()
        second = load(sandbox, destination, work, first.state)
        assert second.returncode == 0, second.stderr[-3000:]
        loaded = destination.read()
        incremental = compare(truth, loaded, set(odd_ids.values()))
        writes = how_it_writes(first_rows, second, len(loaded["receivables"]), len(truth))

    finding = {
        "loader": name,
        "version": version(),
        "setup": setup,
        "writes": writes,
        "full": full,
        "incremental": incremental if writes != "replace" else "only the last run's rows",
        "odd": odd_values,
        "NUL": nul_finding(make, request, tmp_path / "nul", f"{schema}_nul"),
    }
    if out := os.environ.get("KAPWORK_TARGETS_OUT"):
        Path(out, f"{name}.json").write_text(json.dumps(finding, indent=2, ensure_ascii=False))
        return
    recorded = {f["loader"]: f for f in json.loads(MEASURED.read_text())}
    assert finding == recorded.get(name), (
        f"{name} measured otherwise than docs/targets.json says: run `make targets-table`"
        f" and review the README's table.\nmeasured: {json.dumps(finding, ensure_ascii=False)}"
    )
