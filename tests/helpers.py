"""Test helpers: run the tap as users do, and compare its output with the sandbox truth."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types
import typing as t
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from kapwork_sandbox import Sandbox


# Distinctive, so that grepping output for it means something.
API_KEY = "kw_test_4f1d9c2b7e8a6d5c3b2a1f0e"
TAP = str(Path(sys.executable).with_name("tap-kapwork"))


@dataclass
class TapRun:
    """The outcome of one `tap-kapwork` process."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[dict] = field(default_factory=list)

    def records(self, stream: str) -> list[dict]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def schemas(self, stream: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream]

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def state(self) -> dict | None:
        return self.states[-1] if self.states else None

    @property
    def state_lines(self) -> list[str]:
        return [line for line in self.stdout.split("\n") if '"type":"STATE"' in line]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "| ERROR" in line]


# The default lookback_seconds: what an incremental run reads again before its bookmark.
LOOKBACK = dt.timedelta(seconds=300)


def tap_config(sandbox: Sandbox, **overrides: t.Any) -> dict:
    config = {"api_key": sandbox.api_key, "api_url": sandbox.url, "progress_interval": 5}
    config.update(overrides)
    return config


def run_tap(
    config: dict,
    *,
    state: dict | None = None,
    catalog: dict | None = None,
    extra_args: t.Sequence[str] = (),
    timeout: float = 300,
    check: bool = True,
) -> TapRun:
    with tempfile.TemporaryDirectory() as tmp:
        args = [TAP, "--config", _write(tmp, "config.json", config), *extra_args]
        if state is not None:
            args += ["--state", _write(tmp, "state.json", state)]
        if catalog is not None:
            args += ["--catalog", _write(tmp, "catalog.json", catalog)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    run = TapRun(proc.returncode, proc.stdout, proc.stderr)
    # Singer messages end at "\n" only: str.splitlines would also split inside a value
    # holding U+2028 (which JSON leaves unescaped).
    run.messages = [json.loads(line) for line in proc.stdout.split("\n") if line.strip()]
    if check and proc.returncode != 0:
        raise AssertionError(f"tap-kapwork exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return run


def run_tap_cli(
    *args: str,
    files: t.Mapping[str, str] | None = None,
    env: t.Mapping[str, str] | None = None,
    timeout: float = 120,
) -> TapRun:
    """`tap-kapwork *args` as a user types it. `files` (name -> text, written as is) land
    in a temporary folder, and `{name}` in `args` is replaced by that file's path."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, text in (files or {}).items():
            paths[name] = str(Path(tmp, name))
            Path(tmp, name).write_text(text)
        argv = [TAP]
        for arg in args:
            for name, path in paths.items():
                arg = arg.replace("{" + name + "}", path)
            argv.append(arg)
        full_env = {**os.environ, **(env or {})} if env is not None else None
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=full_env,
            cwd=tmp,
        )
    run = TapRun(proc.returncode, proc.stdout, proc.stderr)
    run.messages = [json.loads(line) for line in proc.stdout.split("\n") if line.strip()]
    return run


def assert_one_line_failure(
    run: TapRun, *phrases: str, secret: str = API_KEY, mid_run: bool = False
) -> str:
    """Exit code != 0, no traceback, the key nowhere, one ERROR line naming it, and no
    RECORD (or, for a failure `mid_run`, no bookmark written: the next run re-reads)."""
    assert run.returncode != 0
    if mid_run:
        assert not [s for s in run.states if "replication_key_value" in json.dumps(s)]
    else:
        assert not [m for m in run.messages if m["type"] == "RECORD"]
    assert "Traceback" not in run.stderr
    assert "An unhandled error occurred" not in run.stderr
    assert_secret_absent(run, secret)
    (line,) = run.error_lines
    for phrase in phrases:
        assert phrase in line, line
    return line


def assert_secret_absent(run: TapRun, secret: str) -> None:
    """`secret` in none of its spellings: raw, JSON-escaped, bytes repr, URL-encoded."""
    output = run.stdout + run.stderr
    spellings = {
        secret,
        json.dumps(secret)[1:-1],
        repr(secret.encode())[2:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
    }
    for spelling in spellings:
        assert spelling not in output, f"the key appears as {spelling!r}"


def _write(directory: str, name: str, content: dict) -> str:
    path = Path(directory) / name
    path.write_text(json.dumps(content))
    return str(path)


def discover(config: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [TAP, "--config", _write(tmp, "config.json", config), "--discover"]
        proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


def select_only(catalog: dict, *streams: str) -> dict:
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = chosen
    return catalog


def truth_history_rows(truth: list[dict]) -> set[tuple]:
    """(receivable_id, changed_at, field, from, to) for every change in the truth."""
    return {
        (rec["id"], entry["changed_at"], name, _key(change.get("from")), _key(change.get("to")))
        for rec in truth
        for entry in rec.get("history") or []
        for name, change in entry["changes"].items()
    }


def emitted_history_rows(records: list[dict]) -> list[tuple]:
    return [
        (
            r["receivable_id"],
            r["changed_at"],
            r["field"],
            _key(r["from_value"]),
            _key(r["to_value"]),
        )
        for r in records
    ]


def arrival(value: t.Any) -> t.Any:
    """A history value as the README says it arrives: strings, integers (integral numbers
    too), booleans and null as they are; anything else as JSON text, keys sorted."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (str, int)):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def change_hash(before: t.Any, after: t.Any) -> str:
    """The documented history key column, computed here independently of the tap: SHA-256
    of the compact JSON `[from_value, to_value]`, first 16 hex digits."""
    text = json.dumps([arrival(before), arrival(after)], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def truth_history_keys(truth: list[dict]) -> set[tuple]:
    """(receivable_id, changed_at, field, change_hash): the history primary key, from truth."""
    return {
        (rec["id"], entry["changed_at"], name, change_hash(change.get("from"), change.get("to")))
        for rec in truth
        for entry in rec.get("history") or []
        for name, change in entry["changes"].items()
    }


def emitted_history_keys(records: list[dict]) -> list[tuple]:
    return [(r["receivable_id"], r["changed_at"], r["field"], r["change_hash"]) for r in records]


def _key(value: t.Any) -> t.Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def without_history(receivable: dict) -> dict:
    return {k: v for k, v in receivable.items() if k != "history"}


def bookmark(state: dict, stream: str) -> dt.datetime:
    """The stream's bookmark in a STATE value (no partitions)."""
    return parse_timestamp(state["bookmarks"][stream]["replication_key_value"])


def updated_since(truth: list[dict], since: dt.datetime) -> set[str]:
    """Ids of receivables updated at or after `since`: what a look-back may re-emit."""
    return {r["id"] for r in truth if parse_timestamp(r["updated_at"]) >= since}


def changes_since(truth: list[dict], since: dt.datetime) -> set[tuple]:
    """Truth history rows changed at or after `since`."""
    return {row for row in truth_history_rows(truth) if parse_timestamp(row[1]) >= since}


def script(name: str) -> types.ModuleType:
    """A module of scripts/ (not a package), e.g. script("hub_definition")."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
