"""History completeness: gap-fill past history_limit, fall-back on rejected limits."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import API_KEY, LOOKBACK, bookmark, run_tap, tap_config

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import (
    change_hash,
    changes_since,
    emitted_history_keys,
    emitted_history_rows,
    expected_history_keys,
    expected_history_rows,
    updated_since,
)
from tap_kapwork import history as history_module
from tap_kapwork.history import HistoryLimits, history_rows, history_since, is_truncated
from tap_kapwork.timestamps import parse_timestamp


def _single_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests if r["path"].startswith("/v1/receivables/")]


def test_gap_fill_completes_histories_longer_than_history_limit(sandbox):
    truth = sandbox.truth()
    long_ones = {r["id"] for r in truth if len(r["history"]) >= 5}
    assert any(len(r["history"]) > 50 for r in truth)
    sandbox.clear_requests()
    run = run_tap(tap_config(sandbox, history_limit=5))
    emitted = emitted_history_rows(run.records("receivable_history"))
    assert set(emitted) == expected_history_rows(truth)
    assert max(Counter(emitted).values()) == 1
    fetched = Counter(r["path"].rsplit("/", 1)[1] for r in _single_requests(sandbox))
    assert set(fetched) == long_ones
    lists = [r for r in sandbox.requests if r["path"] == "/v1/receivables"]
    assert {r["params"]["history_limit"][0] for r in lists} == {"5"}


def test_gap_fill_falls_back_when_the_api_caps_history_limit(sandbox):
    sandbox.max_history_limit = 30
    truth = sandbox.truth()
    run = run_tap(tap_config(sandbox, history_limit=60))
    emitted = set(emitted_history_rows(run.records("receivable_history")))
    # What the API will still give: the newest 30 changes of each receivable.
    reachable = expected_history_rows([{**r, "history": r["history"][:30]} for r in truth])
    assert emitted == reachable
    assert "history_limit=60" in run.stderr
    lists = [r for r in sandbox.requests if r["path"] == "/v1/receivables"]
    ok = {int(r["params"]["history_limit"][0]) for r in lists if r["status"] == 200}
    rejected = {int(r["params"]["history_limit"][0]) for r in lists if r["status"] == 400}
    # One rule for both endpoints (HistoryLimits): a midpoint search between the
    # documented default (10) and the smallest rejected value; the list settles on one.
    assert len(ok) == 1
    assert 10 <= min(ok) <= 30 < min(rejected)


def test_incremental_gap_fill_stops_at_what_earlier_runs_covered(sandbox):
    first = run_tap(tap_config(sandbox, history_limit=5))
    before = expected_history_rows(sandbox.truth())
    # Several changes to the same receivables: more than one list page entry can hold.
    changed = sandbox.mutate(10, seed=1)
    for _ in range(7):
        sandbox.mutate(10, seed=1)
    truth = sandbox.truth()
    new = expected_history_rows(truth) - before
    since = bookmark(first.state, "receivable_history") - LOOKBACK
    sandbox.clear_requests()
    second = run_tap(tap_config(sandbox, history_limit=5), state=first.state)
    emitted = set(emitted_history_rows(second.records("receivable_history")))
    assert emitted == new | changes_since(truth, since)
    assert {r["id"] for r in second.records("receivables")} == set(changed) | updated_since(
        truth, since
    )
    # Completing 8 new changes per receivable from a limit of 5 takes one request each.
    assert len(_single_requests(sandbox)) == len(changed)


def test_history_rows_keep_json_types():
    history = [
        {
            "changed_at": "2026-01-07T10:30:00Z",
            "changes": {"amount_cents": {"from": 100000, "to": 150000}},
        },
        {
            "changed_at": "2026-01-05T08:00:00Z",
            "changes": {"due_date": {"from": None, "to": "2026-02-15"}},
        },
    ]
    rows = list(history_rows("rec_abc123", history, None))
    assert rows == [
        {
            "receivable_id": "rec_abc123",
            "changed_at": "2026-01-07T10:30:00Z",
            "field": "amount_cents",
            "change_hash": change_hash(100000, 150000),
            "from_value": 100000,
            "to_value": 150000,
        },
        {
            "receivable_id": "rec_abc123",
            "changed_at": "2026-01-05T08:00:00Z",
            "field": "due_date",
            "change_hash": change_hash(None, "2026-02-15"),
            "from_value": None,
            "to_value": "2026-02-15",
        },
    ]


def test_truncation_is_judged_against_the_covered_bound():
    history = [{"changed_at": f"2026-01-0{d}T00:00:00.000Z", "changes": {}} for d in (5, 4, 3)]
    assert is_truncated(history, 3, None)
    assert not is_truncated(history, 4, None)
    assert is_truncated(history, 3, parse_timestamp("2026-01-03T00:00:00Z"))
    assert not is_truncated(history, 3, parse_timestamp("2026-01-03T12:00:00Z"))


def test_the_history_bound_is_inclusive_in_any_spelling_of_the_instant():
    history = [
        {"changed_at": "2026-01-03T00:00:00Z", "changes": {"status": {"from": "A", "to": "B"}}},
        {"changed_at": "2026-01-02T00:00:00Z", "changes": {"status": {"from": "C", "to": "A"}}},
    ]
    for spelling in ("2026-01-02T00:00:00.000Z", "2026-01-02T01:00:00+01:00", "2026-01-02"):
        assert len(list(history_rows("r", history, parse_timestamp(spelling)))) == 2
    later = parse_timestamp("2026-01-02T00:00:00.001Z")
    assert len(list(history_rows("r", history, later))) == 1


def test_a_receivable_older_than_the_bound_keeps_its_newest_changes():
    # NB: verified_since may filter on verification time: such a row is still emitted
    # with every entry at its newest changed_at, and only those.
    history = [
        {"changed_at": "2026-01-03T00:00:00Z", "changes": {"status": {"from": "A", "to": "B"}}},
        {"changed_at": "2026-01-03T00:00:00Z", "changes": {"status": {"from": "B", "to": "C"}}},
        {"changed_at": "2026-01-02T00:00:00Z", "changes": {"status": {"from": "C", "to": "A"}}},
    ]
    row = {"id": "r", "updated_at": "2026-01-03T00:00:00.000Z", "history": history}
    bound = parse_timestamp("2026-01-05T00:00:00Z")
    since = history_since(row, bound, parse_timestamp(row["updated_at"]))
    assert since == parse_timestamp("2026-01-03T00:00:00Z")
    assert len(list(history_rows("r", history, since))) == 2
    # A receivable at or after the bound keeps the run's bound.
    assert history_since(row, since, since) == since
    assert history_since(row, None, since) is None


def test_history_limits_search_below_a_rejected_value():
    limits = HistoryLimits()
    assert limits.next_after(100) == 400
    assert limits.reject(400) == 205  # the list's fallback: midpoint above the default 10
    limits.accept(100)
    assert limits.next_after(100) == 250
    limits.accept(250)
    assert limits.next_after(250) == 325
    assert limits.reject(251) == 250
    assert limits.next_after(250) is None
    assert HistoryLimits().reject(10) is None  # nothing below the documented default


@pytest.fixture(scope="module")
def same_instant_sandbox():
    """Histories where one field changes twice at one instant (PAID→APPROVED, … at once)."""
    with Sandbox(receivables=150, seed=5, api_key=API_KEY, same_instant_share=0.3) as sandbox:
        yield sandbox


def test_same_instant_changes_of_one_field_get_distinct_keys(same_instant_sandbox):
    truth = same_instant_sandbox.truth()
    without_hash = Counter(key[:3] for key in expected_history_keys(truth))
    assert max(without_hash.values()) > 1, "the sandbox must stamp two changes together"
    run = run_tap(tap_config(same_instant_sandbox))
    records = run.records("receivable_history")
    keys = emitted_history_keys(records)
    assert len(keys) == len(set(keys)), "two distinct changes share a primary key"
    assert set(keys) == expected_history_keys(truth)  # the documented hash, computed apart
    assert set(emitted_history_rows(records)) == expected_history_rows(truth)


def test_history_keys_are_identical_across_runs(same_instant_sandbox):
    config = tap_config(same_instant_sandbox)
    first = run_tap(config).records("receivable_history")
    second = run_tap(config).records("receivable_history")  # a full re-read re-emits all
    assert len(first) == len(second)
    by_key = dict(zip(emitted_history_keys(first), first, strict=True))
    for key, row in zip(emitted_history_keys(second), second, strict=True):
        assert by_key[key] == row  # the re-emitted row upserts onto the same row


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("PENDING", "APPROVED"),
        (None, "2026-02-15"),
        (150000.0, 150001),
        ({"b": 1, "a": ["x", None]}, {"a": "Zürich ✓"}),
        (True, 2**70),
        (12.5, "twelve"),
    ],
)
def test_change_hash_is_the_documented_one(before, after):
    (row,) = history_rows(
        "rcv_1",
        [{"changed_at": "2026-01-07T10:30:00Z", "changes": {"f": {"from": before, "to": after}}}],
        None,
    )
    assert row["change_hash"] == change_hash(before, after)
    assert row["change_hash"] == history_module.change_hash(row["from_value"], row["to_value"])
    assert row["change_hash"] != change_hash(after, before)


def test_history_values_arrive_as_documented():
    history = [
        {
            "changed_at": "2026-01-07T10:30:00Z",
            "changes": {
                "amount_cents": {"from": 150000.0, "to": 2.5},
                "metadata": {"from": None, "to": {"b": 1, "a": "é"}},
                "flag": {"from": False, "to": True},
                "tags": {"to": ["x"]},
            },
        }
    ]
    rows = {r["field"]: r for r in history_rows("rcv_1", history, None)}
    assert (rows["amount_cents"]["from_value"], rows["amount_cents"]["to_value"]) == (150000, "2.5")
    assert rows["metadata"]["to_value"] == '{"a": "é", "b": 1}'
    assert (rows["flag"]["from_value"], rows["flag"]["to_value"]) == (False, True)
    assert (rows["tags"]["from_value"], rows["tags"]["to_value"]) == (None, '["x"]')
