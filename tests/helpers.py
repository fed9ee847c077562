"""Test helpers over kapwork_sandbox.testing: the tap as users run it, failures checked."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import tempfile
import textwrap
import types
import typing as t
import urllib.parse
from pathlib import Path

import jsonschema

from kapwork_sandbox import testing
from kapwork_sandbox.testing import TAP, TapRun, write_json
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from kapwork_sandbox import Sandbox


# Distinctive, so that grepping output for it means something.
API_KEY = "kw_test_4f1d9c2b7e8a6d5c3b2a1f0e"


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
    """`kapwork_sandbox.testing.run_tap`; with `check`, a failed run fails the test."""
    return testing.run_tap(
        config,
        state,
        catalog=catalog,
        extra_args=extra_args,
        timeout=timeout,
        check=AssertionError if check else None,
    )


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
    return TapRun.from_process(proc)


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


def discover(config: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [TAP, "--config", write_json(tmp, "config.json", config), "--discover"]
        proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


def select_only(catalog: dict, *streams: str) -> dict:
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = chosen
    return catalog


def assert_records_validate(run: TapRun) -> None:
    """Every RECORD of both streams validates against its stream's SCHEMA message."""
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for stream in ("receivables", "receivable_history"):
        (schema,) = run.schemas(stream)
        validator = jsonschema.Draft202012Validator(schema["schema"], format_checker=checker)
        for record in run.records(stream):
            validator.validate(record)


def without_history(receivable: dict) -> dict:
    return {k: v for k, v in receivable.items() if k != "history"}


def bookmark(state: dict, stream: str) -> dt.datetime:
    """The stream's bookmark in a STATE value (no partitions)."""
    return parse_timestamp(state["bookmarks"][stream]["replication_key_value"])


def script(name: str) -> types.ModuleType:
    """A module of scripts/ (not a package), e.g. script("hub_definition")."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_block(section: str, language: str, containing: str) -> str:
    """The one fenced `language` block of README section `section` holding `containing`,
    dedented: tests run what the README shows."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", body, flags=re.DOTALL)
    (block,) = [textwrap.dedent(b) for b in blocks if containing in b]
    return block
