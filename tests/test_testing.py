"""kapwork_sandbox.testing: the helpers tests, benchmarks and scripts share."""

from __future__ import annotations

import datetime as dt
import json
import socket
import urllib.request

import pytest
from helpers import API_KEY

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import (
    PostgresError,
    SandboxProcess,
    changes_since,
    digest,
    emitted_history_rows,
    expected_history_keys,
    expected_history_rows,
    free_port,
    postgres_program,
    run_tap,
    truth_digest,
    updated_since,
)

# Two receivables by hand: one with two history entries (one of them changing two
# fields, one value an object), one with no history at all.
TRUTH = [
    {
        "id": "rcv_1",
        "updated_at": "2026-01-07T14:30:00.000Z",
        "history": [
            {
                "changed_at": "2026-01-05T09:00:00.000Z",
                "changes": {"status": {"from": "open", "to": "paid"}},
            },
            {
                "changed_at": "2026-01-07T14:30:00.000Z",
                "changes": {
                    "amount_cents": {"from": 100.0, "to": None},
                    "metadata": {"from": None, "to": {"b": 2, "a": 1}},
                },
            },
        ],
    },
    {"id": "rcv_2", "updated_at": "2026-01-01T00:00:00.000Z", "history": None},
]


def test_free_port_can_be_bound_on_loopback():
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_expected_history_rows_one_per_changed_field():
    assert expected_history_rows(TRUTH) == {
        ("rcv_1", "2026-01-05T09:00:00.000Z", "status", "open", "paid"),
        ("rcv_1", "2026-01-07T14:30:00.000Z", "amount_cents", 100.0, None),
        ("rcv_1", "2026-01-07T14:30:00.000Z", "metadata", None, '{"a": 1, "b": 2}'),
    }


def test_expected_history_keys_carry_the_documented_change_hash():
    # SHA-256 of the compact JSON [from_value, to_value], first 16 hex digits (README),
    # of the values as they arrive: 100.0 as 100, an object as JSON text, keys sorted.
    # The digests were computed by hand: ["open","paid"], [100,null],
    # [null,"{\"a\": 1, \"b\": 2}"].
    assert expected_history_keys(TRUTH) == {
        ("rcv_1", "2026-01-05T09:00:00.000Z", "status", "1af84051a72fad1e"),
        ("rcv_1", "2026-01-07T14:30:00.000Z", "amount_cents", "ed60b28f1d605c78"),
        ("rcv_1", "2026-01-07T14:30:00.000Z", "metadata", "9b493a47e1c9e4ab"),
    }


def test_emitted_rows_match_expected_rows_of_the_same_changes():
    records = [
        {
            "receivable_id": "rcv_1",
            "changed_at": "2026-01-07T14:30:00.000Z",
            "field": "metadata",
            "from_value": None,
            "to_value": {"a": 1, "b": 2},
        }
    ]
    assert set(emitted_history_rows(records)) <= expected_history_rows(TRUTH)


def test_changes_and_updates_since_an_instant_are_inclusive():
    since = dt.datetime(2026, 1, 7, 14, 30, tzinfo=dt.timezone.utc)
    assert updated_since(TRUTH, since) == {"rcv_1"}
    assert {row[2] for row in changes_since(TRUTH, since)} == {"amount_cents", "metadata"}


def test_a_load_with_the_truth_s_rows_has_the_truth_s_digest_whatever_the_instants_form():
    """What a database returns (naive or offset instants, rows in any order) hashes as the
    truth's `Z` stamps do; one row more or less, or another instant, does not."""
    utc = dt.timezone.utc
    receivables = [
        ("rcv_2", dt.datetime(2026, 1, 1, tzinfo=utc)),
        ("rcv_1", "2026-01-07T15:30:00+01:00"),
    ]
    history = [
        ("rcv_1", dt.datetime(2026, 1, 7, 14, 30), "metadata"),
        ("rcv_1", "2026-01-05T09:00:00.000Z", "status"),
        ("rcv_1", "2026-01-07T14:30:00Z", "amount_cents"),
    ]
    expected = truth_digest(TRUTH)
    assert expected["count"] == len(TRUTH) + len(expected_history_rows(TRUTH)) == 5
    assert digest(receivables, history) == expected["rows"]
    assert digest(receivables, None) == expected["receivables"]
    assert digest(receivables, history[1:]) != expected["rows"]
    moved = [("rcv_1", "2026-01-05T09:00:00.001Z", "status"), history[0], history[2]]
    assert digest(receivables, moved) != expected["rows"]


def test_a_missing_postgres_program_is_named():
    with pytest.raises(PostgresError, match="`no-such-postgres-program` was not found"):
        postgres_program("no-such-postgres-program")


def test_run_tap_full_then_from_its_state():
    with Sandbox(receivables=30, seed=5, api_key=API_KEY) as sandbox:
        config = {"api_key": API_KEY, "api_url": sandbox.url}
        first = run_tap(config, timeout=120)
        truth = sandbox.truth()
        assert first.returncode == 0, first.stderr[-2000:]
        assert first.wall > 0
        assert {r["id"] for r in first.records("receivables")} == {r["id"] for r in truth}
        history = emitted_history_rows(first.records("receivable_history"))
        assert set(history) == expected_history_rows(truth)
        assert first.state is not None
        assert json.loads(first.state_lines[-1])["value"] == first.state

        second = run_tap(config, first.state, timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        lists = [r for r in sandbox.requests if r["path"] == "/v1/receivables"]
        assert lists[-1]["params"]["verified_since"] != ["all"]  # the state was passed


def test_run_tap_check_raises_the_given_exception_with_stderr():
    with Sandbox(receivables=5, seed=5, api_key=API_KEY) as sandbox:
        config = {"api_key": "kw_wrong_key", "api_url": sandbox.url}
        failed = run_tap(config, timeout=120)
        assert failed.returncode != 0
        assert failed.error_lines
        with pytest.raises(RuntimeError, match="tap-kapwork exited"):
            run_tap(config, timeout=120, check=RuntimeError)


def test_sandbox_process_listens_until_stopped():
    sandbox = SandboxProcess("--receivables", "5", "--seed", "3")
    try:
        assert str(sandbox.port) in sandbox.banner
        with urllib.request.urlopen(f"{sandbox.url}/_sandbox/health", timeout=30) as response:
            assert response.status == 200
    finally:
        sandbox.stop()
    assert sandbox.proc.returncode == 0
