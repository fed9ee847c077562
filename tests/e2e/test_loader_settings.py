"""The loaders' settings in meltano.yml: names and kinds as the pinned loaders know them,
and `meltano config set` / environment variables reach them as booleans and integers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import typing as t

import pytest
import yaml
from e2e_helpers import PLUGINS, ROOT, loader, meltano

if t.TYPE_CHECKING:
    from pathlib import Path

# meltano.yml kind -> JSON Schema type
KINDS = {"string": "string", "integer": "integer", "boolean": "boolean", "object": "object"}


def _declared(name: str) -> dict[str, dict]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["loaders"] if p["name"] == name]
    return {setting["name"]: setting for setting in plugin["settings"]}


def test_target_postgres_settings_have_the_kinds_of_its_about():
    about = subprocess.run(
        [loader("target-postgres"), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    known = json.loads(about.stdout)["settings"]["properties"]
    declared = _declared("target-postgres")
    for name in ("use_copy", "validate_records", "batch_size_rows", "load_method"):
        assert name in declared, name
    for name, setting in declared.items():
        assert name in known, name
        types = known[name]["type"]
        types = [types] if isinstance(types, str) else types
        assert KINDS[setting["kind"]] in types, (name, setting["kind"], types)
    assert declared["password"].get("sensitive") is True


def test_target_duckdb_settings_are_read_by_its_source():
    # target-duckdb 0.8.0 has no --about: every declared name must be a key its code reads.
    sources = sorted((PLUGINS / "target-duckdb" / "venv").glob("lib/*/site-packages/target_duckdb"))
    if not sources:
        pytest.fail("target-duckdb is not installed: run `make test` (it runs `meltano install`).")
    code = "".join(path.read_text() for path in sources[0].glob("*.py"))
    read = set(re.findall(r"config\.get\(\s*\"(\w+)\"", code))
    declared = _declared("target-duckdb")
    assert {"batch_size_rows", "validate_records", "flush_all_streams"} <= set(declared)
    assert set(declared) <= read, set(declared) - read


def _meltano(project: Path, *args: str, **env: str) -> str:
    database = {"MELTANO_DATABASE_URI": f"sqlite:///{project / 'm.db'}"}
    return meltano(*args, env={**os.environ, **database, **env}, cwd=project, timeout=120).stdout


def test_meltano_config_set_stores_booleans_and_integers(tmp_path):
    shutil.copy(ROOT / "meltano.yml", tmp_path / "meltano.yml")
    config = json.loads(_meltano(tmp_path, "config", "print", "target-postgres", "--format=json"))
    assert config["use_copy"] is True  # the project's defaults
    assert config["validate_records"] is False

    _meltano(tmp_path, "config", "set", "target-postgres", "use_copy", "false")
    _meltano(tmp_path, "config", "set", "target-postgres", "batch_size_rows", "50000")
    _meltano(tmp_path, "config", "set", "target-duckdb", "batch_size_rows", "20000")
    env = {"TARGET_POSTGRES_VALIDATE_RECORDS": "true", "TARGET_DUCKDB_FLUSH_ALL_STREAMS": "true"}
    postgres = json.loads(
        _meltano(tmp_path, "config", "print", "target-postgres", "--format=json", **env)
    )
    duckdb = json.loads(
        _meltano(tmp_path, "config", "print", "target-duckdb", "--format=json", **env)
    )
    assert postgres["use_copy"] is False
    assert postgres["validate_records"] is True
    assert postgres["batch_size_rows"] == 50000
    assert duckdb["batch_size_rows"] == 20000
    assert duckdb["flush_all_streams"] is True
