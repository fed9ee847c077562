"""End-to-end fixtures: a throwaway PostgreSQL, the loaders Meltano installed, pipes."""

from __future__ import annotations

import os
import typing as t

import pytest
from helpers import API_KEY

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import PostgresError, ThrowawayPostgres


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

    cluster = ThrowawayPostgres()
    try:
        cluster.start()
    except PostgresError as error:
        pytest.fail(f"{error}\n(Or set KAPWORK_TEST_PG_DSN to a server.)")
    try:
        yield cluster.settings
    finally:
        cluster.stop()


@pytest.fixture
def e2e_sandbox() -> t.Iterator[Sandbox]:
    with Sandbox(receivables=1500, seed=77, api_key=API_KEY) as sandbox:
        yield sandbox
