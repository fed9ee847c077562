"""The two streams against the sandbox truth: full, incremental, filters, state, wire."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from helpers import (
    LOOKBACK,
    assert_records_validate,
    bookmark,
    discover,
    run_tap,
    select_only,
    tap_config,
    without_history,
)

from kapwork_sandbox.testing import (
    changes_since,
    emitted_history_rows,
    expected_history_rows,
    updated_since,
)
from tap_kapwork.timestamps import parse_timestamp


@pytest.fixture(scope="module")
def full_run(big_sandbox):
    big_sandbox.clear_requests()
    run = run_tap(tap_config(big_sandbox))
    return run, big_sandbox.truth(), list(big_sandbox.requests)


def test_full_sync_equals_truth(full_run):
    run, truth, _ = full_run
    receivables = run.records("receivables")
    assert len(receivables) == len(truth) == 5000
    by_id = {r["id"]: r for r in receivables}
    assert len(by_id) == len(receivables), "a receivable was emitted twice"
    for expected in truth:
        assert by_id[expected["id"]] == without_history(expected)


def test_full_sync_emits_every_history_change_once(full_run):
    run, truth, _ = full_run
    emitted = emitted_history_rows(run.records("receivable_history"))
    assert Counter(emitted).most_common(1)[0][1] == 1, "a history change was emitted twice"
    expected = expected_history_rows(truth)
    assert set(emitted) == expected
    # The sandbox has receivables with more changes than one list page carries.
    longest = max(len(r["history"]) for r in truth)
    assert longest > 50
    assert len(expected) > 5000


def test_records_validate_against_their_schema(full_run):
    run, _, _ = full_run
    assert_records_validate(run)


def test_primary_keys_are_unique_and_present(full_run):
    run, _, _ = full_run
    for stream, keys in (
        ("receivables", ["id"]),
        ("receivable_history", ["receivable_id", "changed_at", "field", "change_hash"]),
    ):
        (schema,) = run.schemas(stream)
        assert schema["key_properties"] == keys
        seen = Counter(tuple(r[k] for k in keys) for r in run.records(stream))
        assert all(value is not None for key in seen for value in key)
        assert max(seen.values()) == 1


def test_one_schema_per_stream_and_small_state(full_run):
    run, truth, _ = full_run
    counts = Counter(m["stream"] for m in run.messages if m["type"] == "SCHEMA")
    assert counts == {"receivables": 1, "receivable_history": 1}
    assert max(len(line) for line in run.state_lines) < 2048
    final = run.state["bookmarks"]
    assert set(final) == {"receivables", "receivable_history"}
    for stream in final.values():
        assert "partitions" not in stream
        assert "progress_markers" not in stream
        # The final bookmark is the newest updated_at the run read: no more, no less.
        assert parse_timestamp(stream["replication_key_value"]) == max(
            parse_timestamp(r["updated_at"]) for r in truth
        )


def test_no_request_per_receivable(full_run):
    _, truth, requests = full_run
    single = [r for r in requests if r["path"] != "/v1/receivables"]
    # Only receivables with more changes than history_limit (100) need their own request.
    assert len(single) == sum(1 for r in truth if len(r["history"]) >= 100)
    assert len(requests) - len(single) == 10  # 5,000 receivables / 500 per page


def test_query_parameters_on_the_wire(full_run):
    _, _, requests = full_run
    lists = [r for r in requests if r["path"] == "/v1/receivables"]
    assert sorted(int(r["params"]["page"][0]) for r in lists) == list(range(1, 11))
    for request in lists:
        params = request["params"]
        assert params["verified_since"] == ["all"]
        assert params["limit"] == ["500"]
        assert sorted(params["expand[]"]) == ["history", "metadata"]
        assert params["history_limit"] == ["100"]


def test_history_only_selection_still_advances_its_bookmark(sandbox):
    catalog = select_only(discover(tap_config(sandbox)), "receivable_history")
    first = run_tap(tap_config(sandbox), catalog=catalog)
    assert first.records("receivables") == []
    assert not first.schemas("receivables")
    assert set(emitted_history_rows(first.records("receivable_history"))) == expected_history_rows(
        sandbox.truth()
    )
    since = bookmark(first.state, "receivable_history") - LOOKBACK

    sandbox.clear_requests()
    second = run_tap(tap_config(sandbox), catalog=catalog, state=first.state)
    # Nothing changed: exactly the changes in the look-back window come again.
    assert set(emitted_history_rows(second.records("receivable_history"))) == changes_since(
        sandbox.truth(), since
    )
    (request,) = [r for r in sandbox.requests if r["path"] == "/v1/receivables"]
    assert parse_timestamp(request["params"]["verified_since"][0]) == since


def test_receivables_only_does_not_ask_for_history(sandbox):
    catalog = select_only(discover(tap_config(sandbox)), "receivables")
    sandbox.clear_requests()
    run = run_tap(tap_config(sandbox, include_metadata=False), catalog=catalog)
    assert len(run.records("receivables")) == 600
    assert not run.schemas("receivable_history")
    for request in sandbox.requests:
        assert "expand[]" not in request["params"]
        assert "history_limit" not in request["params"]


def test_incremental_run_after_mutations(sandbox):
    first = run_tap(tap_config(sandbox))
    before = expected_history_rows(sandbox.truth())
    changed = set(sandbox.mutate(25)) | set(sandbox.insert(5))
    truth = sandbox.truth()
    since = bookmark(first.state, "receivables") - LOOKBACK

    sandbox.clear_requests()
    second = run_tap(tap_config(sandbox), state=first.state)
    emitted = {r["id"]: r for r in second.records("receivables")}
    # Every changed receivable, plus those the look-back window reads again: no more.
    assert changed <= set(emitted)
    assert set(emitted) == changed | updated_since(truth, since)
    by_id = {r["id"]: r for r in truth}
    for rid, record in emitted.items():
        assert record == without_history(by_id[rid])
    new_changes = expected_history_rows(truth) - before
    assert len(new_changes) >= 25
    history = set(emitted_history_rows(second.records("receivable_history")))
    assert new_changes <= history
    assert history == new_changes | changes_since(truth, since)
    for request in sandbox.requests:
        if request["path"] == "/v1/receivables":
            assert request["params"]["verified_since"] != ["all"]

    third = run_tap(tap_config(sandbox), state=second.state)
    since = bookmark(second.state, "receivables") - LOOKBACK
    assert {r["id"] for r in third.records("receivables")} == updated_since(truth, since)
    assert set(emitted_history_rows(third.records("receivable_history"))) == changes_since(
        truth, since
    )


def test_start_date_bounds_the_first_run(sandbox):
    truth = sandbox.truth()
    stamps = sorted(parse_timestamp(r["updated_at"]) for r in truth)
    start = stamps[len(stamps) // 2]
    sandbox.clear_requests()
    run = run_tap(tap_config(sandbox, start_date=start.isoformat()))
    expected = {r["id"] for r in truth if parse_timestamp(r["updated_at"]) >= start}
    assert {r["id"] for r in run.records("receivables")} == expected
    for row in run.records("receivable_history"):
        assert parse_timestamp(row["changed_at"]) >= start
    sent = sandbox.requests[0]["params"]["verified_since"][0]
    assert parse_timestamp(sent) <= start


def test_filters_are_partitions_with_their_own_bookmarks(sandbox):
    truth = sandbox.truth()
    vendors = sorted({r["vendor"]["id"] for r in truth})[:2]
    statuses = ["APPROVED", "PAID"]
    config = tap_config(sandbox, vendor_ids=vendors, statuses=statuses)
    run = run_tap(config)
    expected = {r["id"] for r in truth if r["vendor"]["id"] in vendors and r["status"] in statuses}
    assert {r["id"] for r in run.records("receivables")} == expected
    assert all(set(r) <= set(truth[0]) for r in run.records("receivables"))
    partitions = run.state["bookmarks"]["receivables"]["partitions"]
    assert sorted(
        (p["context"]["vendor_id"], p["context"]["status"]) for p in partitions
    ) == sorted((v, s) for v in vendors for s in statuses)
    assert len(json.dumps(run.state)) < 4096


@pytest.mark.parametrize("order", ["updated_at_desc", "id"])
def test_no_sort_order_is_assumed(sandbox, order):
    # The API documents no order; the tap must be complete and bookmark correctly
    # whichever order the pages come in.
    sandbox.order = order
    config = tap_config(sandbox, page_size=40)
    first = run_tap(config)
    truth = sandbox.truth()
    assert {r["id"] for r in first.records("receivables")} == {r["id"] for r in truth}
    assert set(emitted_history_rows(first.records("receivable_history"))) == expected_history_rows(
        truth
    )
    before = expected_history_rows(truth)
    changed = set(sandbox.mutate(10)) | set(sandbox.insert(2))
    second = run_tap(config, state=first.state)
    truth = sandbox.truth()
    since = bookmark(first.state, "receivables") - LOOKBACK
    assert {r["id"] for r in second.records("receivables")} == changed | updated_since(truth, since)
    assert set(emitted_history_rows(second.records("receivable_history"))) == (
        expected_history_rows(truth) - before
    ) | changes_since(truth, since)
