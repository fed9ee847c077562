"""The API key in no output, in no spelling; failures the tap reports stay one line."""

from __future__ import annotations

import json
import logging
import sys
import urllib.parse

import pytest
from helpers import API_KEY, assert_secret_absent, run_tap, tap_config
from singer_sdk.exceptions import MaxRecordsLimitException

from kapwork_sandbox import Sandbox
from tap_kapwork.errors import (
    KapworkError,
    ReportedFailureFilter,
    install_secret_redaction,
    secret_spellings,
)

# Visible ASCII, but JSON-escaped, bytes repr and URL-encoded spellings all differ.
ODD_KEY = 'kw_"odd"\\key/with+plus&amp%41~end'


@pytest.mark.parametrize("key", [API_KEY, ODD_KEY], ids=["plain", "odd"])
def test_key_never_appears_at_debug_level(monkeypatch, key):
    monkeypatch.setenv("TAP_KAPWORK_LOGLEVEL", "DEBUG")
    with Sandbox(receivables=30, seed=6, api_key=key) as sandbox:
        ok = run_tap(tap_config(sandbox, history_limit=5))
        assert "DEBUG" in ok.stderr
        assert len(ok.records("receivables")) == 30
        sandbox.set_faults(error_rate=1.0)
        failed = run_tap(tap_config(sandbox, retry_max_tries=2), check=False)
        assert failed.returncode != 0
        for run in (ok, failed):
            assert_secret_absent(run, key)
        assert all("Authorization" not in str(r) for r in sandbox.requests)


def test_a_key_with_whitespace_around_it_is_stripped_before_any_header():
    with Sandbox(receivables=30, seed=6, api_key=API_KEY) as sandbox:
        run = run_tap(tap_config(sandbox, api_key=f"  {API_KEY}\r\n"))
        assert len(run.records("receivables")) == 30  # the sandbox accepted the header
        assert "api_key had whitespace around it" in run.stderr
        assert_secret_absent(run, API_KEY)
        assert [r for r in sandbox.requests if r["status"] == 401] == []


def test_every_spelling_of_the_key_is_redacted_in_log_records(caplog):
    secret = 'kw_unit_"redact"\\me/+&%20'
    install_secret_redaction(secret)
    logger = logging.getLogger("tap-kapwork.test-errors")
    spellings = [
        secret,
        json.dumps(secret)[1:-1],
        repr(secret.encode())[2:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
    ]
    assert set(spellings) <= set(secret_spellings(secret))
    with caplog.at_level(logging.INFO):
        for spelling in spellings:
            logger.info("header Bearer %s sent", spelling)
        try:
            raise ValueError(f"bad {secret!r}")
        except ValueError:
            logger.exception("failed")
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for spelling in spellings:
        assert spelling not in text
    assert text.count("***") >= len(spellings)


def test_keys_too_short_to_be_real_are_not_redacted(caplog):
    install_secret_redaction("a")
    with caplog.at_level(logging.INFO):
        logging.getLogger("tap-kapwork.test-errors").info("a banana")
    assert "a banana" in caplog.text


@pytest.mark.parametrize(
    ("error", "dropped"),
    [
        (KapworkError("reported"), True),
        (MaxRecordsLimitException("--test limit"), True),
        (ValueError("a bug"), False),
    ],
)
def test_the_sdk_unhandled_line_is_dropped_only_for_reported_failures(error, dropped):
    quiet = ReportedFailureFilter()
    record = logging.LogRecord(
        "tap-kapwork.receivables",
        logging.ERROR,
        __file__,
        1,
        "An unhandled error occurred while syncing '%s'",
        ("receivables",),
        None,
    )
    other = logging.LogRecord("t", logging.ERROR, __file__, 1, "something else", (), None)
    try:
        raise error
    except (KapworkError, MaxRecordsLimitException, ValueError):
        assert sys.exc_info()[1] is error
        assert quiet.filter(record) is not dropped
        assert quiet.filter(other) is True


def test_redaction_holds_when_two_spellings_of_a_key_are_installed(caplog):
    # The tap installs the key as given and stripped: a chain of two record factories.
    first, second = "kw_chain_first_1234", "kw_chain_second_5678"
    install_secret_redaction(first)
    install_secret_redaction(second)
    with caplog.at_level(logging.INFO):
        try:
            raise ValueError(f"{first} and {second}")
        except ValueError:
            logging.getLogger("tap-kapwork.test-errors").exception("with %s", first)
    text = caplog.text
    assert first not in text
    assert second not in text
