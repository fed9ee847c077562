"""What the API answered: text that is not Unicode in a JSON answer is data, not a fault."""

from __future__ import annotations

import json
import typing as t

import pytest
from helpers import (
    API_KEY,
    assert_one_line_failure,
    assert_records_validate,
    run_tap,
    tap_config,
    without_history,
)

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import emitted_history_rows
from tap_kapwork import bad_text

LIST = "/v1/receivables"
FFFD = "\ufffd"


def test_decode_replaces_lone_surrogates_and_bytes_that_are_not_utf8_and_names_them():
    body = (
        b'{"data": [{"id": "r1", "vendor": {"name": "Caf\\ud83d"}},'
        b' {"id": "r2", "history": [{"changes": {"po\xff": {"to": "PO-1\xed\xa0\xbd"}}}]},'
        b' {"id": "r3", "vendor": {"name": "\\ud83d\\ude00 fine"}}]}'
    )
    payload, repaired = bad_text.decode(body)
    assert payload["data"][0]["vendor"]["name"] == "Caf" + FFFD
    assert payload["data"][1]["history"][0]["changes"] == {"po" + FFFD: {"to": "PO-1" + FFFD * 3}}
    assert payload["data"][2]["vendor"]["name"] == "\U0001f600 fine"  # a whole pair is an emoji
    assert [bad_text.describe(payload, path) for path in repaired] == [
        ("r1", "vendor.name"),
        ("r2", "history[0].changes.po" + FFFD),
        ("r2", "history[0].changes.po" + FFFD + ".to"),
    ]
    single, paths = bad_text.decode(b'{"id": "r9", "portal_status": "OK\\udc00"}')
    assert [bad_text.describe(single, p) for p in paths] == [("r9", "portal_status")]


@pytest.mark.parametrize(
    "body", [b'{"data": [', b'{"a": NaN}', b"\xff{}", b'{"a": "\\ud83d"', b"<html>"]
)
def test_what_is_not_json_stays_an_error(body):
    with pytest.raises(ValueError):
        bad_text.decode(body)


@pytest.fixture
def sandbox_300() -> t.Iterator[Sandbox]:
    with Sandbox(receivables=300, seed=21, api_key=API_KEY) as sandbox:
        yield sandbox


def test_bad_text_is_emitted_with_fffd_and_named_without_a_retry(sandbox_300):
    sandbox = sandbox_300
    ordered = sorted(sandbox.truth(), key=lambda r: (r["updated_at"], r["id"]))
    name, status = ordered[10], ordered[150]  # pages 1 and 2
    change = next(r for r in ordered[200:] if r["history"])  # page 3
    field = next(iter(change["history"][0]["changes"]))
    sandbox.bad_text(name["id"], "vendor.name", "surrogate")
    sandbox.bad_text(status["id"], "portal_status", "bytes")
    sandbox.bad_text(change["id"], f"history.0.changes.{field}.to", "surrogate")
    run = run_tap(tap_config(sandbox, page_size=100))

    emitted = {r["id"]: r for r in run.records("receivables")}
    truth = {r["id"]: without_history(r) for r in sandbox.truth()}
    assert emitted[name["id"]]["vendor"]["name"] == name["vendor"]["name"] + FFFD
    assert emitted[status["id"]]["portal_status"] == status["portal_status"] + FFFD * 2
    assert emitted[change["id"]] == truth[change["id"]]
    others = set(truth) - {name["id"], status["id"]}
    assert {rid: emitted[rid] for rid in others} == {rid: truth[rid] for rid in others}
    newest = change["history"][0]
    (row,) = [
        r
        for r in run.records("receivable_history")
        if (r["receivable_id"], r["changed_at"], r["field"])
        == (change["id"], newest["changed_at"], field)
    ]
    assert row["to_value"] == f"{newest['changes'][field]['to'] or ''}{FFFD}"
    assert len(emitted_history_rows(run.records("receivable_history"))) > 1000

    # One WARNING per field, naming the receivable and the field; api_url is not blamed.
    for rid, where in (
        (name["id"], "vendor.name"),
        (status["id"], "portal_status"),
        (change["id"], f"history[0].changes.{field}.to"),
    ):
        lines = [line for line in run.stderr.splitlines() if f"Receivable {rid}: {where} " in line]
        assert len(lines) == 1, run.stderr
        assert "WARNING" in lines[0]
        assert "not Unicode" in lines[0]
    assert "api_url" not in run.stderr
    assert "Retrying" not in run.stderr
    # Exactly one request per page: nothing was retried.
    pages = [r["params"]["page"][0] for r in sandbox.requests if r["path"] == LIST]
    assert sorted(pages) == ["1", "2", "3"]
    # Every record validates, and the output is UTF-8 JSON without a lone surrogate.
    assert "\\ud8" not in run.stdout
    assert "\\udc" not in run.stdout
    run.stdout.encode("utf-8")
    assert_records_validate(run)
    assert json.loads(json.dumps(run.state))["bookmarks"]["receivables"]["replication_key_value"]


def test_a_body_that_is_not_json_keeps_its_one_line_error(sandbox_300):
    sandbox_300.set_faults(truncate_rate=1.0)
    run = run_tap(tap_config(sandbox_300, retry_max_tries=2), check=False)
    assert_one_line_failure(run, "Gave up after 2 tries", "invalid JSON body", "api_url")
