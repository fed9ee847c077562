"""Page order, page bounds and drift repair, with page sources that misbehave on purpose."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tap_kapwork.errors import KapworkError
from tap_kapwork.paging import Listing, Page, iter_pages


def _rows(start: int, stop: int) -> list[dict]:
    return [{"id": f"r{i:04d}"} for i in range(start, stop)]


class Pages:
    """A listing of `total` rows served `size` at a time, with optional quirks."""

    def __init__(
        self,
        total: int,
        size: int,
        *,
        delay: float = 0.0,
        always_more: bool = False,
        omit_has_more: bool = False,
        count_offset: int = 0,
    ):
        self.rows = _rows(0, total)
        self.size = size
        self.delay = delay
        self.always_more = always_more
        self.omit_has_more = omit_has_more
        self.count_offset = count_offset
        self.requested: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, number: int) -> Page:
        with self._lock:
            self.requested.append(number)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(random.uniform(0, self.delay))
        start = (number - 1) * self.size
        rows = self.rows[start : start + self.size]
        with self._lock:
            self.in_flight -= 1
        has_more = self.always_more or start + self.size < len(self.rows)
        total = len(self.rows) + self.count_offset
        return Page(number, rows, None if self.omit_has_more else has_more, total)


def test_pages_come_in_order_with_bounded_parallelism():
    source = Pages(total=1000, size=37, delay=0.01)
    pages = list(iter_pages(source, workers=4))
    assert [p.number for p in pages] == list(range(1, 29))
    assert [r["id"] for p in pages for r in p.rows] == [r["id"] for r in source.rows]
    assert 1 < source.max_in_flight <= 4


def test_a_server_always_saying_has_more_stops_at_the_first_empty_page():
    source = Pages(total=95, size=10, always_more=True)
    pages = list(iter_pages(source, workers=3))
    assert sorted(source.requested) == list(range(1, 12))  # page 11 is empty: the end
    assert sum(len(p.rows) for p in pages) == 95


def test_without_has_more_reads_to_total_count():
    source = Pages(total=95, size=10, omit_has_more=True)
    listing = Listing(source, workers=3, max_passes=3)
    assert sorted(r["id"] for r in listing.rows()) == [r["id"] for r in source.rows]
    assert listing.complete
    assert not listing.count_disagrees


def test_a_total_count_too_low_is_read_past_while_has_more_says_so():
    source = Pages(total=95, size=10, count_offset=-40)
    listing = Listing(source, workers=3, max_passes=3)
    assert sorted(r["id"] for r in listing.rows()) == [r["id"] for r in source.rows]
    assert listing.complete
    assert listing.count_disagrees
    assert max(source.requested) == 10


def test_has_more_beyond_total_count_stops_when_a_page_repeats():
    def fetch(number: int) -> Page:  # ignores `page` once past the count it claims
        rows = _rows((number - 1) * 10, number * 10) if number <= 2 else _rows(20, 30)
        return Page(number, rows, True, 15)

    pages = list(iter_pages(fetch, workers=2))
    assert [p.number for p in pages] == [1, 2, 3]


def test_counts_pages_in_the_servers_page_size():
    # Asked for 500 a page, the server sends 7: page count follows what it sends.
    source = Pages(total=30, size=7)
    pages = list(iter_pages(source, workers=2))
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]


def test_without_total_count_a_server_ignoring_page_is_stopped():
    def fetch(number: int) -> Page:
        return Page(number, _rows(0, 5), True, None)

    with pytest.raises(KapworkError, match="ignore the page parameter"):
        list(iter_pages(fetch, workers=4))


def test_without_total_count_follows_has_more():
    source = Pages(total=23, size=5)

    def fetch(number: int) -> Page:
        page = source(number)
        return Page(page.number, page.rows, page.has_more, None)

    assert sum(len(p.rows) for p in iter_pages(fetch, workers=4)) == 23


def test_listing_rereads_when_rows_shift_between_pages():
    rows = _rows(0, 30)
    # Row 3 is updated after page 1 was served; in updated_at order it moves to the
    # end, every later row shifts back by one, and row 10 is never served in pass 1.
    shifted = [*rows[:3], *rows[4:], rows[3]]
    passes = {"n": 0}

    def fetch(number: int) -> Page:
        if number == 1:
            passes["n"] += 1
        order = rows if passes["n"] == 1 and number == 1 else shifted
        return Page(number, order[(number - 1) * 10 : number * 10], number < 3, 30)

    listing = Listing(fetch, workers=1, max_passes=3)
    seen = [r["id"] for r in listing.rows()]
    assert sorted(seen) == [r["id"] for r in rows]
    assert len(seen) == len(set(seen))
    assert listing.passes == 2
    assert listing.complete


def test_listing_gives_up_after_max_passes_while_rows_keep_moving():
    passes = {"n": 0}

    def fetch(number: int) -> Page:
        passes["n"] += 1  # every pass sees other updated_at values: drift, not a bad count
        rows = [{**row, "updated_at": f"pass {passes['n']}"} for row in _rows(0, 9)]
        return Page(number, rows, False, 10)

    listing = Listing(fetch, workers=1, max_passes=3)
    assert len(list(listing.rows())) == 9
    assert not listing.complete
    assert not listing.count_disagrees
    assert listing.passes == 3
    assert listing.missing == 1


def test_a_stable_over_count_is_not_drift():
    source = Pages(total=95, size=10, count_offset=3)
    listing = Listing(source, workers=3, max_passes=3)
    assert sorted(r["id"] for r in listing.rows()) == [r["id"] for r in source.rows]
    # Two identical passes: the count is wrong, nothing moved; the listing is complete.
    assert listing.passes == 2
    assert listing.complete
    assert listing.count_disagrees
    assert listing.missing == 3


def test_sync_during_churn_then_one_more_run_misses_nothing(sandbox):
    """Updates land several times a second while the tap pages through the listing."""
    from helpers import run_tap, tap_config

    from kapwork_sandbox.testing import emitted_history_rows, expected_history_rows

    sandbox.set_faults(latency_ms=25)
    config = tap_config(sandbox, page_size=25, max_parallel_requests=2)
    sandbox.start_churn(per_second=15)
    try:
        first = run_tap(config)
    finally:
        sandbox.stop_churn()
    churned = sandbox.truth()
    assert any(r["fault"] is None and r["path"] == "/v1/receivables" for r in sandbox.requests)
    second = run_tap(config, state=first.state)
    truth = sandbox.truth()
    assert len(truth) == len(churned)

    latest = {}
    for run in (first, second):  # a target's upsert: the later run wins
        latest.update({r["id"]: r for r in run.records("receivables")})
    missing = [r["id"] for r in truth if r["id"] not in latest]
    assert missing == []
    stale = [r["id"] for r in truth if latest[r["id"]]["updated_at"] != r["updated_at"]]
    assert stale == []
    emitted = set(
        emitted_history_rows(
            first.records("receivable_history") + second.records("receivable_history")
        )
    )
    assert expected_history_rows(truth) - emitted == set()
