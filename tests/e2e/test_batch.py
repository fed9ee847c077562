"""BATCH and RECORD loads into PostgreSQL are identical, and both equal the sandbox truth.

target-postgres runs with the project's settings from meltano.yml (use_copy on,
validate_records off, no _sdc_ columns): the loader checks nothing, so what it loaded is
compared with the truth field by field.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import typing as t

import pytest
import yaml
from e2e_helpers import (
    MELTANO,
    ROOT,
    assert_equals_truth,
    conninfo,
    load_postgres,
    loader,
    meltano,
    pipe,
    postgres_project,
)
from helpers import tap_config

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


def test_batch_and_record_loads_are_identical(
    e2e_sandbox: Sandbox, postgres: dict, tmp_path: Path
) -> None:
    dsn = conninfo(postgres)
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
    by_record, by_batch = load_postgres(dsn, "by_record"), load_postgres(dsn, "by_batch")
    assert by_batch == by_record
    assert_equals_truth(by_record, truth)

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
    by_record, by_batch = load_postgres(dsn, "by_record"), load_postgres(dsn, "by_batch")
    assert by_batch == by_record
    assert_equals_truth(by_record, truth)


# --- `meltano run tap-kapwork-batch target-postgres`: BATCH by default into PostgreSQL -----

BATCH_RUN = "meltano run tap-kapwork-batch target-postgres"


def _run_folders(project: Path) -> list[str]:
    """The run folders under the one lineage of .meltano/batches."""
    root = project / ".meltano" / "batches"
    lineages = list(root.iterdir()) if root.exists() else []
    assert len(lineages) <= 1, lineages
    return sorted(p.name for lineage in lineages for p in lineage.iterdir())


def test_tap_kapwork_batch_is_batch_and_tap_kapwork_is_not():
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    extractors = {p["name"]: p for p in project["plugins"]["extractors"]}
    assert "batch_config" not in extractors["tap-kapwork"].get("config", {})  # target-duckdb
    batch = extractors["tap-kapwork-batch"]
    assert batch["inherit_from"] == "tap-kapwork"
    assert batch["config"]["batch_config"]["storage"]["root"].startswith("file://")
    assert BATCH_RUN in (ROOT / "README.md").read_text()


def test_ten_batch_runs_load_the_truth_and_leave_two_runs_of_files(
    e2e_sandbox: Sandbox, postgres: dict, tmp_path: Path
) -> None:
    project, env = postgres_project(tmp_path, e2e_sandbox, postgres, "batch_ten_runs")
    for run in range(10):
        if run:
            e2e_sandbox.mutate(20)
            e2e_sandbox.insert(3)
        meltano(*shlex.split(BATCH_RUN)[1:], env=env, cwd=project)
        folders = _run_folders(project)
        assert len(folders) == min(run + 1, 2), folders
        assert list((project / ".meltano" / "batches").rglob("*.json.gz"))
    assert_equals_truth(load_postgres(conninfo(postgres), "batch_ten_runs"), e2e_sandbox.truth())


def _kill_mid_run(project: Path, env: dict[str, str]) -> str:
    """Start the pipeline, kill -9 Meltano, the tap and the loader once the tap has
    written two BATCH files; returns the killed run's folder."""
    before = set(_run_folders(project))
    log = project / "killed-run.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            # --force: a run killed before is marked failed only after 5 minutes
            [str(MELTANO), "run", "--force", *shlex.split(BATCH_RUN)[2:]],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = set(_run_folders(project)) - before
            root = project / ".meltano" / "batches"
            if new and len(list(root.rglob(f"{next(iter(new))}/*.json.gz"))) >= 2:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("the tap wrote no BATCH files within 120 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (killed,) = new
    return killed


def test_kill_9_mid_run_then_resume_loses_nothing_and_duplicates_nothing(
    e2e_sandbox: Sandbox, postgres: dict, tmp_path: Path
) -> None:
    project, env = postgres_project(tmp_path, e2e_sandbox, postgres, "batch_killed")
    root = (project / ".meltano" / "batches").as_uri()
    # Slow pages and small files: the run is still going when the files appear.
    e2e_sandbox.set_faults(latency_ms=150)
    env |= {
        "TAP_KAPWORK_PAGE_SIZE": "100",
        "TAP_KAPWORK_MAX_PARALLEL_REQUESTS": "1",
        "TAP_KAPWORK_BATCH_BATCH_CONFIG": json.dumps(
            {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": root},
                "batch_size": 300,
            }
        ),
    }
    dsn = conninfo(postgres)
    killed = [_kill_mid_run(project, env)]  # the first run: nothing committed yet
    # Meltano marks the killed job stale only after 5 minutes without a heartbeat.
    meltano("run", "--force", *shlex.split(BATCH_RUN)[2:], env=env, cwd=project)
    assert_equals_truth(load_postgres(dsn, "batch_killed"), e2e_sandbox.truth())

    e2e_sandbox.mutate(60)
    e2e_sandbox.insert(10)
    killed.append(_kill_mid_run(project, env))  # an incremental run
    meltano("run", "--force", *shlex.split(BATCH_RUN)[2:], env=env, cwd=project)
    assert_equals_truth(load_postgres(dsn, "batch_killed"), e2e_sandbox.truth())

    # Once a later run's STATE is committed, the killed runs' files go too.
    meltano("run", "--force", *shlex.split(BATCH_RUN)[2:], env=env, cwd=project)
    assert not set(killed) & set(_run_folders(project))
    assert len(_run_folders(project)) == 2
