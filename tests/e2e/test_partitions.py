"""README "Scaling out", as written: the vendors dealt into partitions by its SQL on a
first load, its meltano.yml (one inherited extractor, job and schedule per partition),
both jobs at once into PostgreSQL, then one killed mid-run and rerun."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
import typing as t

import psycopg
import yaml
from e2e_helpers import (
    MELTANO,
    ROOT,
    assert_equals_truth,
    conninfo,
    edit_project,
    load_postgres,
    meltano,
    postgres_project,
)

if t.TYPE_CHECKING:
    from pathlib import Path

    from kapwork_sandbox import Sandbox

SCHEMA = "partitions_e2e"


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _run_script(lines: list[str], project: Path, env: dict[str, str]) -> dict[str, str]:
    """The README's shell lines: `… &` starts a command, `wait` waits for them all (each
    must exit 0); returns each command's output."""
    running: dict[str, subprocess.Popen[str]] = {}
    outputs: dict[str, str] = {}

    def wait() -> None:
        for command, proc in running.items():
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{command}\n{out[-4000:]}"
            outputs[command] = out
        running.clear()

    for line in lines:
        command = line.strip()
        if command == "wait":
            wait()
            continue
        background = command.endswith("&")
        command = command.rstrip("&").strip()
        words = shlex.split(command)
        assert words[0] == "meltano", command
        proc = subprocess.Popen(
            [str(MELTANO), *words[1:]],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running[command] = proc
        if not background:
            wait()
    wait()
    return outputs


def test_two_partitions_at_once_equal_the_truth_and_survive_a_kill(
    e2e_sandbox: Sandbox, postgres: dict, tmp_path: Path
) -> None:
    section = _section("Scaling out")
    (sql,) = _blocks(section, "sql")
    (snippet,) = _blocks(section, "yaml")
    (script,) = _blocks(section, "bash")
    project, env = postgres_project(tmp_path, e2e_sandbox, postgres, SCHEMA)
    dsn = conninfo(postgres)

    # A first load by one job, and the README's SQL on it.
    meltano("run", "tap-kapwork-batch", "target-postgres", env=env, cwd=project)
    with psycopg.connect(dsn) as conn:
        parts = conn.execute(sql.replace("kapwork.receivables", f"{SCHEMA}.receivables")).fetchall()
        # The partitions load from scratch, into the tables the first load created
        # (target-postgres 0.8.1 creating one schema from two jobs at once fails).
        conn.execute(f"truncate {SCHEMA}.receivables, {SCHEMA}.receivable_history")
    truth = e2e_sandbox.truth()
    assert [part for part, _, _ in parts] == [0, 1]
    groups = [vendors for _, vendors, _ in parts]
    assert sorted(v for group in groups for v in group) == sorted(
        {r["vendor"]["id"] for r in truth}
    )
    assert sum(count for _, _, count in parts) == len(truth)
    assert abs(parts[0][2] - parts[1][2]) <= max(c for _, _, c in parts) // 2  # balanced

    # The README's meltano.yml, with those vendors.
    declared = yaml.safe_load(snippet)
    for plugin, vendors in zip(declared["plugins"]["extractors"], groups, strict=True):
        plugin["config"]["vendor_ids"] = vendors

    def declare(content: dict) -> None:
        content["plugins"]["extractors"] += declared["plugins"]["extractors"]
        content["jobs"] = declared["jobs"]
        content["schedules"] = declared["schedules"]

    edit_project(project, declare)
    e2e_sandbox.mutate(30)
    e2e_sandbox.insert(5)
    e2e_sandbox.clear_requests()

    outputs = _run_script(script.splitlines(), project, env)
    assert_equals_truth(load_postgres(dsn, SCHEMA), e2e_sandbox.truth())
    # Each job asked only for its own vendors.
    asked = [
        set(r["params"].get("vendor_id", []))
        for r in e2e_sandbox.requests
        if r["path"] == "/v1/receivables"
    ]
    assert all(a and (a <= set(groups[0]) or a <= set(groups[1])) for a in asked)
    listing = outputs["meltano schedule list"]
    assert "kapwork-vendors-a-nightly" in listing
    assert "kapwork-vendors-b-nightly" in listing
    states = meltano("state", "list", env=env, cwd=project).stdout
    state_ids = {
        "dev:tap-kapwork-vendors-a-to-target-postgres",
        "dev:tap-kapwork-vendors-b-to-target-postgres",
    }
    assert state_ids <= set(states.split())

    # One job killed mid-run (-9, with its tap and loader), then run again.
    e2e_sandbox.mutate(40)
    e2e_sandbox.insert(5)
    e2e_sandbox.clear_requests()
    e2e_sandbox.set_faults(latency_ms=150)
    env_slow = {**env, "TAP_KAPWORK_PAGE_SIZE": "50", "TAP_KAPWORK_MAX_PARALLEL_REQUESTS": "1"}
    proc = subprocess.Popen(
        [str(MELTANO), "run", "kapwork-vendors-a"],
        cwd=project,
        env=env_slow,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len([r for r in e2e_sandbox.requests if r["path"] == "/v1/receivables"]) < 2:
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job made no list request within 120 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    e2e_sandbox.clear_faults()
    meltano("run", "--force", "kapwork-vendors-a", env=env, cwd=project)
    meltano("run", "kapwork-vendors-b", env=env, cwd=project)
    assert_equals_truth(load_postgres(dsn, SCHEMA), e2e_sandbox.truth())


def test_the_section_declares_no_shared_extractor() -> None:
    """Each partition is an extractor of its own (see the README for why)."""
    (snippet,) = _blocks(_section("Scaling out"), "yaml")
    declared = yaml.safe_load(snippet)
    names = [p["name"] for p in declared["plugins"]["extractors"]]
    assert len(set(names)) == len(names) == len(declared["jobs"]) == len(declared["schedules"])
    tasks = [task.split()[0] for job in declared["jobs"] for task in job["tasks"]]
    assert sorted(tasks) == sorted(names)
