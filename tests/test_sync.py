"""One listing sync against an imperfect API: bounds, late rows, clock skew, lying pages.

Every test compares what the tap emitted with the sandbox's truth: nothing missing.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from helpers import API_KEY, bookmark, run_tap, tap_config, without_history

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import (
    changes_since,
    emitted_history_rows,
    expected_history_rows,
    updated_since,
)
from tap_kapwork.sync import stream_bound
from tap_kapwork.tap import TapKapwork
from tap_kapwork.timestamps import parse_timestamp

LIST = "/v1/receivables"


@pytest.fixture(scope="module")
def small() -> t.Iterator[Sandbox]:
    """300 receivables, read-only."""
    with Sandbox(receivables=300, seed=5, api_key=API_KEY) as sandbox:
        yield sandbox


def state_at(moment: str) -> dict:
    return {
        "bookmarks": {
            stream: {"replication_key": key, "replication_key_value": moment}
            for stream, key in (("receivables", "updated_at"), ("receivable_history", "changed_at"))
        }
    }


def spellings(moment: dt.datetime) -> list[str]:
    """The same instant as the docs write it, with microseconds, and in another zone."""
    return [
        moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        moment.isoformat(timespec="microseconds"),
        moment.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat(),
    ]


@pytest.mark.parametrize("form", [0, 1, 2], ids=["docs-Z", "micro+00:00", "-05:00"])
def test_rows_exactly_at_the_bookmark_are_emitted_in_any_spelling(small, form):
    truth = small.truth()
    at = next(r for r in sorted(truth, key=lambda r: r["updated_at"]) if len(r["history"]) > 1)
    moment = parse_timestamp(at["updated_at"])
    run = run_tap(tap_config(small, lookback_seconds=0), state=state_at(spellings(moment)[form]))
    emitted = {r["id"] for r in run.records("receivables")}
    assert at["id"] in emitted
    assert emitted == updated_since(truth, moment)
    history = set(emitted_history_rows(run.records("receivable_history")))
    assert history == changes_since(truth, moment)
    newest = at["history"][0]["changed_at"]
    assert any(row[0] == at["id"] and row[1] == newest for row in history)


def test_verified_since_on_verification_time_emits_old_rows_with_their_newest_changes():
    with Sandbox(
        receivables=300, seed=6, api_key=API_KEY, verified_since_field="verified_at"
    ) as sandbox:
        config = tap_config(sandbox)
        first = run_tap(config)
        before = expected_history_rows(sandbox.truth())
        # Kapwork re-verifies old receivables (no change: their updated_at stays old)
        # and one receivable changes.
        truth = sandbox.truth()
        verified = [r["id"] for r in truth if len(r["history"]) > 2][:5]
        sandbox.verify(verified)
        changed = sandbox.mutate(3, seed=9)
        truth = sandbox.truth()
        second = run_tap(config, state=first.state)

    by_id = {r["id"]: r for r in truth}
    emitted = {r["id"]: r for r in second.records("receivables")}
    assert set(verified) | set(changed) <= set(emitted)
    for rid in verified:
        assert emitted[rid] == without_history(by_id[rid])
        assert parse_timestamp(by_id[rid]["updated_at"]) < bookmark(first.state, "receivables")
    history = set(emitted_history_rows(second.records("receivable_history")))
    assert expected_history_rows(truth) - before <= history  # every new change
    for rid in verified:
        newest = by_id[rid]["history"][0]["changed_at"]
        expected = expected_history_rows([{**by_id[rid], "history": by_id[rid]["history"][:1]}])
        got = {row for row in history if row[0] == rid}
        assert expected <= got  # its newest change, even though it is older than the bound
        assert {row[1] for row in got} == {newest}  # and only changes at that instant


@pytest.mark.parametrize(("lookback", "found"), [(300, True), (0, False)])
def test_changes_visible_late_are_read_by_the_look_back(lookback, found):
    with Sandbox(receivables=200, seed=7, api_key=API_KEY) as sandbox:
        # history_limit 5: the 7 late changes need the single endpoint, whose truncation
        # test must use the same bound (bookmark minus look-back) as the emission.
        config = tap_config(sandbox, lookback_seconds=lookback, history_limit=5)
        sandbox.mutate(1, seed=1)  # so that the bookmark is about now
        first = run_tap(config)
        before = expected_history_rows(sandbox.truth())
        # Replication lag: changes made visible now, stamped 60 s ago (before the bookmark).
        (late,) = sandbox.mutate(1, seed=2, backdate_seconds=60)
        for _ in range(6):
            sandbox.mutate(0, ids=[late], backdate_seconds=60)
        truth = {r["id"]: r for r in sandbox.truth()}
        second = run_tap(config, state=first.state)

    stamped = parse_timestamp(truth[late]["updated_at"])
    assert stamped < bookmark(first.state, "receivables")
    emitted = {r["id"]: r for r in second.records("receivables")}
    changes = expected_history_rows(list(truth.values())) - before
    assert len({row[1] for row in changes}) == 7
    history = set(emitted_history_rows(second.records("receivable_history")))
    if found:
        assert emitted[late] == without_history(truth[late])
        assert changes <= history
    else:  # without the look-back the changes are lost: what lookback_seconds is for
        assert late not in emitted
        assert not changes & history


@pytest.mark.parametrize("offset", [-300, 300], ids=["api-clock-behind", "api-clock-ahead"])
def test_clock_skew_loses_nothing_changed_during_the_run(offset):
    with Sandbox(receivables=300, seed=8, api_key=API_KEY, clock_offset_seconds=offset) as sandbox:
        oldest = sorted(sandbox.truth(), key=lambda r: r["updated_at"])
        done: list[str] = []

        def during_the_run(entry: dict) -> None:
            # When page 2 is asked for: update a receivable of page 1 (already read),
            # then one of a later page (read after it, so the newest the run sees).
            if entry["path"] == LIST and entry["params"].get("page") == ["2"] and not done:
                done.extend(sandbox.mutate(0, ids=[oldest[0]["id"]]))
                done.extend(sandbox.mutate(0, ids=[oldest[100]["id"]]))

        sandbox.on_request = during_the_run
        # No look-back: the bookmark's cap alone must keep the first update.
        config = tap_config(sandbox, lookback_seconds=0, page_size=50, max_parallel_requests=1)
        first = run_tap(config)
        sandbox.on_request = None
        second = run_tap(config, state=first.state)
        truth = sandbox.truth()

    assert len(done) == 2
    latest: dict[str, dict] = {}
    for run in (first, second):  # a target's upsert: the later run wins
        latest.update({r["id"]: r for r in run.records("receivables")})
    assert {rid: latest.get(rid) for rid in done} == {
        r["id"]: without_history(r) for r in truth if r["id"] in done
    }
    assert [r["id"] for r in truth if latest[r["id"]] != without_history(r)] == []
    emitted = emitted_history_rows(
        first.records("receivable_history") + second.records("receivable_history")
    )
    assert expected_history_rows(truth) - set(emitted) == set()
    # The cap came from the API's clock, not this machine's.
    api_now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)
    assert bookmark(first.state, "receivables") <= api_now


def test_without_a_date_header_the_local_clock_caps_with_one_warning(small):
    small.omit_date_header = True
    try:
        vendors = sorted({r["vendor"]["id"] for r in small.truth()})[:3]
        run = run_tap(tap_config(small, vendor_ids=vendors))
    finally:
        small.omit_date_header = False
    truth = [r for r in small.truth() if r["vendor"]["id"] in vendors]
    assert {r["id"] for r in run.records("receivables")} == {r["id"] for r in truth}
    assert run.stderr.count("carry no Date header") == 1  # once, not once per partition
    partitions = run.state["bookmarks"]["receivables"]["partitions"]
    assert len(partitions) == 3
    assert all(p["replication_key_value"] for p in partitions)


@pytest.mark.parametrize(
    "knobs",
    [{"omit_has_more": True}, {"total_count_offset": -120}],
    ids=["no-has_more", "total_count-too-low"],
)
def test_paging_that_lies_still_reads_everything_and_bookmarks(knobs):
    with Sandbox(receivables=300, seed=9, api_key=API_KEY) as sandbox:
        for name, value in knobs.items():
            setattr(sandbox, name, value)
        run = run_tap(tap_config(sandbox, page_size=40))
        truth = sandbox.truth()
    assert {r["id"] for r in run.records("receivables")} == {r["id"] for r in truth}
    assert set(emitted_history_rows(run.records("receivable_history"))) == expected_history_rows(
        truth
    )
    newest = max(parse_timestamp(r["updated_at"]) for r in truth)
    assert bookmark(run.state, "receivables") == newest


def test_a_stable_over_count_lets_the_bookmark_advance_with_the_true_reason(small):
    small.total_count_offset = 3
    try:
        run = run_tap(tap_config(small, page_size=100))
    finally:
        small.total_count_offset = 0
    truth = small.truth()
    assert {r["id"] for r in run.records("receivables")} == {r["id"] for r in truth}
    assert "total_count says 303 but two identical passes returned 300 distinct" in run.stderr
    assert "moving between pages" not in run.stderr
    lists = [r for r in small.requests if r["path"] == LIST]
    assert len(lists) >= 6  # two passes of three pages
    assert bookmark(run.state, "receivables") == max(
        parse_timestamp(r["updated_at"]) for r in truth
    )


def test_drift_on_every_pass_keeps_the_bookmark():
    with Sandbox(receivables=200, seed=10, api_key=API_KEY) as sandbox:
        sandbox.total_count_offset = 3

        def drift(entry: dict) -> None:
            if entry["path"] == LIST and entry["params"].get("page") == ["1"]:
                sandbox.mutate(1)  # every pass sees something else

        sandbox.on_request = drift
        previous = state_at("2020-01-01T00:00:00Z")
        run = run_tap(tap_config(sandbox, page_size=100), state=previous)
        truth = sandbox.truth()
    assert "After 3 passes" in run.stderr
    assert "identical passes" not in run.stderr
    assert run.state == previous  # the bookmark stays: the next run reads the range again
    assert {r["id"] for r in run.records("receivables")} == {r["id"] for r in truth}


@pytest.mark.parametrize(
    ("start_date", "lookback", "expected"),
    [
        (None, 300, "2026-03-01T11:55:00Z"),  # the bookmark minus the look-back
        (None, 0, "2026-03-01T12:00:00Z"),  # 0 disables it
        ("2026-03-01T11:58:00Z", 300, "2026-03-01T11:58:00Z"),  # start_date is not moved back
        ("2026-01-01T00:00:00Z", 300, "2026-03-01T11:55:00Z"),
    ],
)
def test_the_bound_is_the_bookmark_minus_the_look_back_never_before_start_date(
    start_date, lookback, expected
):
    config = {"api_key": API_KEY, "api_url": "http://127.0.0.1:9", "lookback_seconds": lookback}
    if start_date:
        config["start_date"] = start_date
    tap = TapKapwork(config=config, state=state_at("2026-03-01T13:00:00+01:00"))
    for stream in tap.streams.values():
        assert stream_bound(stream, None) == parse_timestamp(expected)


# Repeated rows and empty pages (kapwork_sandbox/quirks.py) ---------------------------------


def _last_emitted(run: t.Any) -> dict[str, dict]:
    """Each id's last emitted receivable: what a target's upsert keeps."""
    return {r["id"]: r for r in run.records("receivables")}


@pytest.mark.parametrize("page", [None, 1], ids=["same-page", "across-pages"])
def test_an_older_version_listed_first_is_followed_by_the_newest(page):
    with Sandbox(receivables=300, seed=12, api_key=API_KEY) as sandbox:
        # The receivable changed last: its newer version alone carries the bookmark.
        rid = max(sandbox.truth(), key=lambda r: r["updated_at"])["id"]
        sandbox.repeat_older_version(rid, page=page)  # page 6 of 6 is its own
        run = run_tap(tap_config(sandbox, page_size=50))
        truth = sandbox.truth()
    by_id = {r["id"]: r for r in truth}
    versions = [r["updated_at"] for r in run.records("receivables") if r["id"] == rid]
    assert len(versions) == 2
    assert versions[0] < versions[1] == by_id[rid]["updated_at"]
    assert _last_emitted(run) == {r["id"]: without_history(r) for r in truth}
    # The change that made the newer version is emitted, and every other change.
    history = set(emitted_history_rows(run.records("receivable_history")))
    assert history == expected_history_rows(truth)
    newest = parse_timestamp(by_id[rid]["updated_at"])
    assert newest == max(parse_timestamp(r["updated_at"]) for r in truth)
    assert bookmark(run.state, "receivables") == newest
    assert bookmark(run.state, "receivable_history") == newest


@pytest.mark.parametrize("page", [None, 5], ids=["same-page", "across-pages"])
def test_an_older_version_listed_after_the_newer_one_is_not_emitted_after_it(small, page):
    ordered = sorted(small.truth(), key=lambda r: (r["updated_at"], r["id"]))
    record = next(r for r in ordered[50:100] if len(r["history"]) >= 2)  # on page 2 of 6
    small.repeat_older_version(record["id"], page=page, before=False)
    try:
        run = run_tap(tap_config(small, page_size=50))
    finally:
        small.clear_quirks()
    emitted = [r for r in run.records("receivables") if r["id"] == record["id"]]
    assert emitted == [without_history(record)]
    assert _last_emitted(run) == {r["id"]: without_history(r) for r in small.truth()}


@pytest.mark.parametrize("pages", [[1], [3], [2, 3, 4]], ids=["page-1", "page-3", "pages-2-4"])
def test_pages_empty_only_at_first_are_read_again_and_the_bookmark_advances(small, pages):
    small.empty_pages(*pages, times=1)
    try:
        run = run_tap(tap_config(small, page_size=50))
    finally:
        small.clear_quirks()
    truth = small.truth()
    assert _last_emitted(run) == {r["id"]: without_history(r) for r in truth}
    assert set(emitted_history_rows(run.records("receivable_history"))) == (
        expected_history_rows(truth)
    )
    assert bookmark(run.state, "receivables") == max(
        parse_timestamp(r["updated_at"]) for r in truth
    )
    assert f"pass 1: page {pages[0]} was empty while the API said more follow" in run.stderr


@pytest.mark.parametrize("page", [1, 3], ids=["page-1", "page-3"])
def test_a_page_always_empty_keeps_the_bookmark_and_the_next_run_reads_everything(page):
    with Sandbox(receivables=300, seed=13, api_key=API_KEY) as sandbox:
        previous = state_at("2020-01-01T00:00:00Z")
        config = tap_config(sandbox, page_size=50, max_parallel_requests=2)
        sandbox.empty_pages(page)
        run = run_tap(config, state=previous)
        sandbox.clear_quirks()
        after = run_tap(config, state=run.state)
        truth = sandbox.truth()
    assert run.returncode == 0
    assert run.state == previous  # rows never read: the bookmark stays
    read = (page - 1) * 50
    assert (
        f"page {page} was empty while the API said more follow ({read} rows read, "
        "total_count 300, has_more true)"
    ) in run.stderr
    assert "The bookmark stays where it was" in run.stderr
    assert "The bookmark advances" not in run.stderr
    skipped = {r["id"] for r in sorted(truth, key=lambda r: r["updated_at"])[read : read + 50]}
    assert {r["id"] for r in run.records("receivables")} == {r["id"] for r in truth} - skipped
    # The API answers properly again: the next run reads everything from the old bookmark.
    assert _last_emitted(after) == {r["id"]: without_history(r) for r in truth}
    assert bookmark(after.state, "receivables") == max(
        parse_timestamp(r["updated_at"]) for r in truth
    )
