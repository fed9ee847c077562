"""Helpers for the end-to-end tests: the loaders Meltano installed, and pipes into them."""

from __future__ import annotations

import datetime as dt
import filecmp
import os
import subprocess
import tempfile
import typing as t
from pathlib import Path

import psycopg
import pytest
import yaml
from helpers import run_tap
from psycopg.rows import dict_row

from kapwork_sandbox.testing import expected_history_rows, meltano_project
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from kapwork_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / ".meltano" / "loaders"
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"


# The plugins `meltano install` put in the project's .meltano/, shared read-only.
PLUGIN_TYPES = ("extractors", "loaders", "utilities", "mappers", "transformers")


def meltano(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the pinned Meltano in `cwd`; fails the test on a non-zero exit.

    In the repository's project, each call gets a .meltano/ of its own (MELTANO_SYS_DIR_ROOT)
    whose plugin folders link to the installed ones: two `meltano run` at once (pytest-xdist)
    would otherwise share .meltano/run/tap-kapwork/state.json and tap.properties.json. State
    lives in the system database, which each test names (MELTANO_DATABASE_URI).
    """
    if not MELTANO.exists():
        pytest.fail(f"{MELTANO} is missing: run `make test`, which installs Meltano.")
    with tempfile.TemporaryDirectory(prefix="meltano-sys-") as sys_dir:
        if cwd == ROOT:
            check_installed_tap()
            assert "MELTANO_DATABASE_URI" in env, "name a system database of the test's own"
            for kind in PLUGIN_TYPES:
                if (ROOT / ".meltano" / kind).is_dir():
                    Path(sys_dir, kind).symlink_to(ROOT / ".meltano" / kind)
            env = {**env, "MELTANO_SYS_DIR_ROOT": sys_dir}
        proc = subprocess.run(
            [str(MELTANO), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def meltano_env(
    sandbox: Sandbox, tmp_path: Path, environment: str = "dev", **env: str | None
) -> dict[str, str]:
    """The environment of a `meltano run` from a sandbox: this process's, a system database
    of its own, the sandbox's address and key, then `env`; a value None is left out."""
    return {
        k: v
        for k, v in {
            **os.environ,
            "MELTANO_ENVIRONMENT": environment,
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "TAP_KAPWORK_API_URL": sandbox.url,
            "TAP_KAPWORK_API_KEY": sandbox.api_key,
            **env,
        }.items()
        if v is not None
    }


def check_installed_tap() -> None:
    """Fail when the tap Meltano runs is not the source: meltano.yml installs it as a
    package (`pip_url: .`), so a change to tap_kapwork/ needs `make meltano`."""
    installed = sorted(ROOT.glob(".meltano/extractors/tap-kapwork/venv/lib/*/site-packages"))
    if not installed:
        pytest.fail("tap-kapwork is not installed into Meltano: run `make meltano`.")
    sources = [p.name for p in (ROOT / "tap_kapwork").glob("*.py")]
    _, changed, missing = filecmp.cmpfiles(
        ROOT / "tap_kapwork", installed[0] / "tap_kapwork", sources, shallow=False
    )
    if changed or missing:
        pytest.fail(
            f"The tap Meltano runs is older than tap_kapwork/ ({', '.join(changed + missing)}):"
            " run `make meltano`, which reinstalls it."
        )


def fresh_copy(destination: Path, *plugins: str) -> Path:
    """kapwork_sandbox.testing.meltano_project: the project as a fresh clone has it, the
    `plugins` linked to the ones `make meltano` installed."""
    try:
        return meltano_project(ROOT, destination, plugins)
    except RuntimeError as error:
        pytest.fail(str(error))


def loader(name: str) -> str:
    """The executable `meltano install` put in the loader's own virtualenv."""
    path = PLUGINS / name / "venv" / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make test` (it runs `meltano install`) first.")
    return str(path)


def pipe(config: dict, target: str, target_config: Path, state: dict | None = None) -> dict:
    """tap-kapwork | target: returns the tap's last STATE; fails on any non-zero exit."""
    run = run_tap(config, state=state)
    proc = subprocess.run(
        [target, "--config", str(target_config)],
        input=run.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run.state is not None
    return run.state


def project_copy(destination: Path, *plugins: str, args_log: Path | None = None) -> Path:
    """A fresh copy of the project (its own .meltano/run: state, catalog) that runs the
    plugins `make meltano` installed, e.g. "extractors/tap-kapwork", "loaders/target-jsonl"
    (their virtualenvs linked, never reinstalled: run Meltano with MELTANO_AUTO_INSTALL
    false). With `args_log`, the tap runs through a wrapper that appends its arguments to
    that file, one line per start."""
    check_installed_tap()
    project = fresh_copy(destination, *plugins)
    if args_log is not None:
        wrapper = destination.parent / f"{destination.name}-tap-kapwork"
        tap = ROOT / ".meltano" / "extractors" / "tap-kapwork" / "venv" / "bin" / "tap-kapwork"
        wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{args_log}"\nexec "{tap}" "$@"\n')
        wrapper.chmod(0o755)
        edit_project(project, lambda p: extractor(p, "tap-kapwork").update(executable=str(wrapper)))
    return project


def postgres_project(
    tmp_path: Path, sandbox: Sandbox, postgres: dict, schema: str
) -> tuple[Path, dict[str, str]]:
    """A copy of the project (its own .meltano/run and .meltano/batches) with the tap and
    target-postgres, and the environment that points it at the sandbox and at `schema`
    of the `postgres` fixture's server."""
    project = project_copy(
        tmp_path / "project", "extractors/tap-kapwork", "loaders/target-postgres"
    )
    env = {
        **clean_environment(),
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_AUTO_INSTALL": "false",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_KAPWORK_API_URL": sandbox.url,
        "TAP_KAPWORK_API_KEY": sandbox.api_key,
        **target_postgres_env(postgres, schema),
    }
    return project, env


def edit_project(project: Path, change: t.Callable[[dict], object]) -> None:
    """Rewrite the copy's meltano.yml after `change` edits it (comments are lost)."""
    path = project / "meltano.yml"
    content = yaml.safe_load(path.read_text())
    change(content)
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def extractor(project: dict, name: str) -> dict:
    """The extractor `name` in a loaded meltano.yml."""
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == name]
    return plugin


# --- PostgreSQL: what a load wrote, against the sandbox's truth ---------------------------


def clean_environment() -> dict[str, str]:
    """This process's environment without Meltano's, the tap's or a loader's settings,
    and without Meltano's daily look-up of its latest version on pypi.org (a project
    copy is a new project to it): tests talk to 127.0.0.1 only."""
    prefixes = ("MELTANO_", "TAP_KAPWORK_", "TARGET_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, "MELTANO_CLI_DISABLE_VERSION_CHECK": "true"}


def target_postgres_env(postgres: dict, schema: str) -> dict[str, str]:
    """target-postgres' settings for the `postgres` fixture's server, into `schema`."""
    return {
        "TARGET_POSTGRES_HOST": str(postgres["host"]),
        "TARGET_POSTGRES_PORT": str(postgres["port"]),
        "TARGET_POSTGRES_USER": str(postgres["user"]),
        # trust auth ignores it, but the loader insists on one
        "TARGET_POSTGRES_PASSWORD": str(postgres["password"] or "unused"),
        "TARGET_POSTGRES_DATABASE": str(postgres["database"]),
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
    }


def conninfo(postgres: dict) -> str:
    """A libpq connection string for the `postgres` fixture's settings."""
    params = {**postgres, "dbname": postgres["database"]}
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "database" and v != "")


def _rows(dsn: str, schema: str, table: str, order: str) -> list[dict]:
    """Every row, every column but the loader's own _sdc_ metadata."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        rows = conn.execute(f"select * from {schema}.{table} order by {order}").fetchall()
    return [{k: v for k, v in row.items() if not k.startswith("_sdc_")} for row in rows]


def load_postgres(dsn: str, schema: str) -> dict[str, list[dict]]:
    return {
        "receivables": _rows(dsn, schema, "receivables", "id"),
        "receivable_history": _rows(
            dsn, schema, "receivable_history", "receivable_id, changed_at, field"
        ),
    }


def _plain(value: t.Any) -> t.Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def assert_equals_truth(loaded: dict[str, list[dict]], truth: list[dict]) -> None:
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
