"""End-to-end fixtures: a throwaway PostgreSQL, the loaders Meltano installed, pipes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import typing as t
from pathlib import Path

import pytest
from helpers import API_KEY

from kapwork_sandbox import Sandbox


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    found = shutil.which(name) or (str(installed[-1]) if installed else None)
    if not found:
        pytest.fail(
            f"PostgreSQL's `{name}` was not found (PATH or /usr/lib/postgresql/*/bin). "
            "Install the PostgreSQL server package, or set KAPWORK_TEST_PG_DSN to a server."
        )
    return found


@pytest.fixture(scope="session")
def postgres() -> t.Iterator[dict[str, t.Any]]:
    """Connection settings of a PostgreSQL server for the whole session.

    KAPWORK_TEST_PG_DSN (host=… port=… user=… password=… dbname=…) names one; otherwise a
    throwaway cluster is created on a free loopback port and removed afterwards.
    """
    if dsn := os.environ.get("KAPWORK_TEST_PG_DSN"):
        params = dict(part.split("=", 1) for part in dsn.split())
        yield {
            "host": params.get("host", "127.0.0.1"),
            "port": int(params.get("port", 5432)),
            "user": params.get("user", "postgres"),
            "password": params.get("password", ""),
            "database": params.get("dbname", "postgres"),
        }
        return

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    workdir = Path(tempfile.mkdtemp(prefix="kapwork-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(workdir, user="postgres")
    data, port = workdir / "data", _free_port()

    def sh(*args: str) -> None:
        proc = subprocess.run([*run_as, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = (workdir / "log").read_text() if (workdir / "log").exists() else ""
            pytest.fail(f"PostgreSQL could not start ({' '.join(args[:2])}): {proc.stderr}{log}")

    sh(initdb, "-D", str(data), "-U", "kapwork", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    sh(pg_ctl, "-D", str(data), "-o", options, "-l", str(workdir / "log"), "-w", "start")
    try:
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": "kapwork",
            "password": "",
            "database": "postgres",
        }
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def e2e_sandbox() -> t.Iterator[Sandbox]:
    with Sandbox(receivables=1500, seed=77, api_key=API_KEY) as sandbox:
        yield sandbox
