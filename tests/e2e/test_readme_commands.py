"""The README's Meltano commands, run as written with the pinned Meltano, in a fresh copy.

Every `meltano install`, `meltano … config …` and dev-environment `meltano run … target-duckdb`
or `target-jsonl` line of the README's shell blocks runs, in the README's order, in a copy
of the project made of the files git tracks (what a fresh clone has: no .meltano/, no
output/warehouse.duckdb, no .env). Commands added to the README later run too. The copy
has its own .meltano/ and .env, so nothing is written into the repository, secrets least.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import typing as t
from pathlib import Path

import duckdb
import pytest
from e2e_helpers import MELTANO, ROOT, fresh_copy

from kapwork_sandbox import Sandbox

README = ROOT / "README.md"
# meltano.yml's dev environment uses this key for the local sandbox; it is also what the
# test types when the README reads the key from standard input (`--from-file -`).
SANDBOX_KEY = "sandbox-key"
LOCAL_LOADERS = {"target-duckdb", "target-jsonl"}


def _environment(tokens: list[str]) -> str:
    for i, token in enumerate(tokens):
        if token.startswith("--environment="):
            return token.split("=", 1)[1]
        if token == "--environment" and i + 1 < len(tokens):
            return tokens[i + 1]
    return "dev"  # meltano.yml's default_environment


def _runs_here(tokens: list[str]) -> bool:
    """Whether a `meltano …` command line is one this test runs."""
    words = [w for w in tokens[1:] if not w.startswith("-")]
    if not words:
        return False
    if words[0] in {"install", "config"}:
        return True
    if words[0] == "run" and _environment(tokens) == "dev":
        # Plain `meltano run tap-kapwork <local loader>`: no database server needed.
        return len(words) == 3 and words[1] == "tap-kapwork" and words[2] in LOCAL_LOADERS
    return False


def documented_commands(text: str) -> list[str]:
    """The `meltano` command lines of the README's shell blocks that this test runs."""
    commands, fence = [], None
    for line in text.replace("\\\n", " ").splitlines():  # join continued lines
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            continue
        if fence not in {"bash", "sh", "shell", "console"} or not stripped.startswith("meltano "):
            continue
        tokens = shlex.split(stripped, comments=True)
        if tokens and tokens[0] == "meltano" and _runs_here(tokens):
            commands.append(shlex.join(tokens))
    return commands


def test_readme_lists_the_commands_users_need():
    commands = documented_commands(README.read_text())
    assert "meltano install" in commands
    assert any(c.startswith("meltano config set tap-kapwork api_key") for c in commands)
    assert "meltano config list tap-kapwork" in commands
    assert "meltano --environment=dev config test tap-kapwork" in commands
    assert "meltano run tap-kapwork target-duckdb" in commands
    # Meltano 4 answers "No such command 'tap-kapwork'" to the old word order.
    assert not [c for c in commands if c.startswith("meltano config tap-kapwork")]


def test_readme_meltano_commands_run_in_a_fresh_copy(tmp_path):
    if not MELTANO.exists():
        pytest.fail(f"{MELTANO} is missing: run `make test`, which installs Meltano.")
    commands = documented_commands(README.read_text())
    project = fresh_copy(tmp_path / "tap-kapwork")
    assert not (project / "output" / "warehouse.duckdb").exists()
    assert not (project / ".env").exists()
    untouched = {p: p.read_bytes() for p in (ROOT / "meltano.yml", ROOT / ".env") if p.exists()}

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MELTANO_", "TAP_KAPWORK_", "TARGET_", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{MELTANO.parent}{os.pathsep}{env.get('PATH', '')}"
    with Sandbox(receivables=300, seed=31, api_key=SANDBOX_KEY) as sandbox:
        # Only the address differs from meltano.yml's dev environment (127.0.0.1:8765):
        # tests pick a free port.
        env["TAP_KAPWORK_API_URL"] = sandbox.url
        outputs = [_run(command, project, env) for command in commands]
        receivables = len(sandbox.truth())

    assert {p: p.read_bytes() for p in untouched} == untouched, "the repository was written to"
    assert not (ROOT / ".env").exists() or ROOT / ".env" in untouched
    assert f"TAP_KAPWORK_API_KEY='{SANDBOX_KEY}'" in (project / ".env").read_text()
    listing = outputs[commands.index("meltano config list tap-kapwork")]
    assert "api_key [env: TAP_KAPWORK_API_KEY] current value: (redacted)" in listing
    assert SANDBOX_KEY not in listing

    # `meltano run tap-kapwork target-duckdb` wrote where meltano.yml says, in output/.
    with duckdb.connect(str(project / "output" / "warehouse.duckdb"), read_only=True) as db:
        (loaded,) = db.sql("select count(*) from kapwork.receivables").fetchall()[0]
    assert loaded == receivables


def _run(command: str, project: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        env=env,
        input=SANDBOX_KEY + "\n",  # for `--from-file -`; other commands do not read it
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output: t.Final = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"README command failed: {command}\n{output[-4000:]}"
    return output
