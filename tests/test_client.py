"""Faults, errors and secrets: retries that finish the job, one-line failures, no key leaks."""

from __future__ import annotations

import os
import time

import pytest
from helpers import API_KEY, assert_one_line_failure, discover, run_tap, tap_config, without_history

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import emitted_history_rows, expected_history_rows
from tap_kapwork.answers import parse_retry_after
from tap_kapwork.errors import NotFoundError
from tap_kapwork.history import HistoryCompleter, HistoryLimits


def test_completes_with_nothing_missing_under_faults(sandbox):
    sandbox.set_faults(
        error_rate=0.10,
        rate_limit_rate=0.03,
        retry_after=1,
        truncate_rate=0.02,
        drop_rate=0.02,
        seed=4,
    )
    truth = sandbox.truth()
    run = run_tap(tap_config(sandbox, page_size=25, history_limit=5))
    faults = [r["fault"] for r in sandbox.requests if r["fault"]]
    assert {"error", "rate_limit", "truncate", "drop"} <= {f.split(":")[0] for f in faults}
    by_id = {r["id"]: r for r in run.records("receivables")}
    assert by_id == {r["id"]: without_history(r) for r in truth}
    assert set(emitted_history_rows(run.records("receivable_history"))) == expected_history_rows(
        truth
    )
    assert "HTTP retries:" in run.stderr
    assert API_KEY not in run.stdout + run.stderr


@pytest.mark.parametrize("retry_after_format", ["seconds", "http-date"])
def test_retry_after_pauses_every_worker(sandbox, retry_after_format):
    sandbox.set_faults(
        rate_limit_rate=0.15, retry_after=2, retry_after_format=retry_after_format, seed=9
    )
    run_tap(tap_config(sandbox, page_size=20, max_parallel_requests=4, include_metadata=False))
    log = sandbox.requests
    limited = [r for r in log if r["status"] == 429]
    assert limited
    for hit in limited:
        retry = next(r for r in log if r["time"] > hit["time"] and r["params"] == hit["params"])
        # http-date has one-second resolution, so it may come up to a second early.
        assert retry["time"] - hit["time"] >= (1.9 if retry_after_format == "seconds" else 0.9)
    # One shared pause, not N workers hammering: nothing is sent in the middle of it.
    first = limited[0]["time"]
    assert not [r for r in log if first + 0.5 < r["time"] < first + 0.9]


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480.0) == 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_wrong_key_is_one_line(sandbox):
    run = run_tap(tap_config(sandbox, api_key="kw_wrong_key_123456789"), check=False)
    assert_one_line_failure(run, "rejected the API key", "401", "api_key")
    assert "kw_wrong_key_123456789" not in run.stdout + run.stderr
    assert len([r for r in sandbox.requests if r["status"] == 401]) == 1, "401 must not be retried"


def test_bad_request_names_the_parameter(sandbox):
    sandbox.max_history_limit = 3
    run = run_tap(tap_config(sandbox, history_limit=5), check=False)
    assert_one_line_failure(run, "parameter 'history_limit'", "400")
    assert len([r for r in sandbox.requests if r["status"] == 400]) == 1


@pytest.mark.parametrize(
    ("faults", "phrase"),
    [({"html_rate": 1.0}, "HTML page"), ({"missing_data_rate": 1.0}, "without a 'data' list")],
)
def test_wrong_kind_of_answer_is_one_line(sandbox, faults, phrase):
    sandbox.set_faults(**faults)
    run = run_tap(tap_config(sandbox), check=False)
    assert_one_line_failure(run, phrase, "api_url")


def test_unreachable_api_gives_up_in_bounded_time(sandbox):
    url = sandbox.url
    sandbox.stop()
    started = time.monotonic()
    run = run_tap(
        {"api_key": API_KEY, "api_url": url, "retry_max_tries": 3, "request_timeout": 2},
        check=False,
    )
    # Bounded by the 3 tries, not by retry_max_wait (300 s); wide for a loaded CI machine.
    assert time.monotonic() - started < 120
    assert_one_line_failure(run, "Gave up after 3 tries", "api_url")


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ({"api_key": None}, "api_key is required"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1000}, "page_size"),
        ({"start_date": "last tuesday"}, "start_date"),
        ({"api_url": "kapwork"}, "api_url"),
        ({"api_url": "http://api.example.com"}, "plain http"),
    ],
)
def test_bad_config_is_one_line_before_any_request(sandbox, override, phrase):
    config = {k: v for k, v in {**tap_config(sandbox), **override}.items() if v is not None}
    run = run_tap(config, check=False)
    assert_one_line_failure(run, "Invalid configuration", phrase)
    assert sandbox.requests == []


def test_plain_http_opt_in_is_accepted(sandbox):
    config = {"api_key": API_KEY, "api_url": "http://api.example.com", "allow_insecure_http": True}
    catalog = discover(config)  # accepted: discovery sends nothing, so nothing leaves loopback
    assert {s["tap_stream_id"] for s in catalog["streams"]} == {"receivables", "receivable_history"}


def test_progress_is_logged_on_long_runs(sandbox):
    sandbox.set_faults(latency_ms=60)
    run = run_tap(tap_config(sandbox, page_size=20, progress_interval=1, max_parallel_requests=2))
    progress = [
        line for line in run.stderr.splitlines() if "Receivables listing in progress" in line
    ]
    assert progress
    assert "page" in progress[0]
    assert "receivables/s" in progress[0]


def test_gap_fill_404_warns_and_keeps_the_embedded_history(caplog):
    def get_json(path, params):
        raise NotFoundError("404 Not Found")

    import logging

    completer = HistoryCompleter(
        get_json, "/v1/receivables", logging.getLogger("t"), HistoryLimits()
    )
    receivable = {
        "id": "rcv_1",
        "history": [{"changed_at": "2026-01-02T00:00:00Z", "changes": {}}] * 2,
    }
    completer.complete(receivable, 2, None)
    assert len(receivable["history"]) == 2
    assert "disappeared (404)" in caplog.text


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_resume_after_sigkill_loses_nothing(sandbox):
    import json
    import signal
    import subprocess
    import tempfile
    from pathlib import Path

    from helpers import TAP

    first = run_tap(tap_config(sandbox))
    before = expected_history_rows(sandbox.truth())
    changed = set(sandbox.mutate(300))
    truth = sandbox.truth()
    sandbox.set_faults(latency_ms=40)
    config = tap_config(sandbox, page_size=20, max_parallel_requests=1)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "c.json").write_text(json.dumps(config))
        Path(tmp, "s.json").write_text(json.dumps(first.state))
        proc = subprocess.Popen(
            [TAP, "--config", f"{tmp}/c.json", "--state", f"{tmp}/s.json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if sum('"type":"RECORD"' in x and '"receivables"' in x for x in lines) >= 100:
                break
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        lines += rest.splitlines()
    messages = [json.loads(x) for x in lines if x.strip().startswith("{")]
    partial_ids = {
        m["record"]["id"]
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == "receivables"
    }
    assert 100 <= len(partial_ids) < len(changed), "the kill must land part-way through"
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    old = first.state["bookmarks"]["receivables"]["replication_key_value"]
    for state in states:  # no STATE may claim progress the run had not finished
        assert state["bookmarks"]["receivables"].get("replication_key_value") == old
    resume_state = states[-1] if states else first.state

    sandbox.clear_faults()
    resumed = run_tap(tap_config(sandbox), state=resume_state)
    union = partial_ids | {r["id"] for r in resumed.records("receivables")}
    assert changed <= union
    partial_history = [
        m["record"]
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == "receivable_history"
    ]
    emitted = set(emitted_history_rows(partial_history + resumed.records("receivable_history")))
    assert expected_history_rows(truth) - before <= emitted


def test_request_timeout_bounds_a_body_that_trickles_in():
    # Every answer arrives 8 bytes per 100 ms: no socket read ever waits 2 s, yet a
    # page would take minutes. Each attempt must end near request_timeout.
    with Sandbox(receivables=40, seed=3, api_key=API_KEY) as sandbox:
        sandbox.set_faults(trickle_rate=1.0, trickle_bytes=8, trickle_interval_ms=100)
        started = time.monotonic()
        run = run_tap(
            tap_config(sandbox, request_timeout=2, retry_max_tries=2, page_size=40),
            check=False,
        )
        wall = time.monotonic() - started
        tries = [r["time"] for r in sandbox.requests]
    line = assert_one_line_failure(run, "Gave up after 2 tries", "request_timeout (2 s)")
    assert "body was still arriving" in line
    assert len(tries) == 2
    # Generous bounds for a loaded machine: an attempt under 3x the timeout (plus the
    # first backoff, at most 0.5 s), the whole run far below what the body would take.
    assert tries[1] - tries[0] < 3 * 2 + 0.5
    assert wall < 2 * 3 * 2 + 10
    assert "Retrying in" in run.stderr
    assert "(timeout)" in run.stderr


def test_a_trickled_answer_is_retried_and_nothing_is_missing():
    with Sandbox(receivables=40, seed=3, api_key=API_KEY) as sandbox:
        sandbox.set_faults(trickle_rate=0.3, trickle_bytes=256, trickle_interval_ms=100, seed=2)
        truth = sandbox.truth()
        run = run_tap(tap_config(sandbox, request_timeout=1, page_size=10))
        trickled = [r for r in sandbox.requests if r["fault"] == "trickle"]
    assert trickled
    assert {r["id"] for r in run.records("receivables")} == {r["id"] for r in truth}
    assert set(emitted_history_rows(run.records("receivable_history"))) == expected_history_rows(
        truth
    )
    assert "timeout:" in run.stderr  # the retry summary counts them as timeouts


def test_a_retry_after_beyond_the_budget_fails_at_once(sandbox):
    sandbox.set_faults(rate_limit_rate=1.0, retry_after=600)
    started = time.monotonic()
    run = run_tap(tap_config(sandbox, retry_max_wait=300), check=False)
    assert time.monotonic() - started < 30, "it must not sleep toward the budget"
    assert_one_line_failure(
        run,
        "The API asked to wait 600 s (Retry-After) but retry_max_wait leaves 300 s",
        "429",
        "Raise retry_max_wait or run later",
    )
    assert len(sandbox.requests) == 1
