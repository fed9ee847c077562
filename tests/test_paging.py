"""Page order, page bounds and drift repair, with page sources that misbehave on purpose."""

from __future__ import annotations

import random
import threading
import time
import typing as t

import pytest

from tap_kapwork.errors import KapworkError
from tap_kapwork.paging import MAX_EMPTY_PAGES, Listing, Page, PagePass, iter_pages
from tap_kapwork.timestamps import parse_timestamp


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
        empty: dict[int, int | None] | None = None,
    ):
        self.rows = _rows(0, total)
        self.size = size
        self.delay = delay
        self.always_more = always_more
        self.omit_has_more = omit_has_more
        self.count_offset = count_offset
        # page number -> how many times it is served empty (None: always), has_more kept
        self.empty = dict(empty or {})
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
            if number in self.empty:
                times = self.empty[number]
                if times is None or times > 0:
                    rows = []
                    if times is not None:
                        self.empty[number] = times - 1
        has_more = self.always_more or start + self.size < len(self.rows)
        total = len(self.rows) + self.count_offset
        return Page(number, rows, None if self.omit_has_more else has_more, total)


def test_pages_come_in_order_with_bounded_parallelism():
    source = Pages(total=1000, size=37, delay=0.01)
    pages = list(iter_pages(source, workers=4))
    assert [p.number for p in pages] == list(range(1, 29))
    assert [r["id"] for p in pages for r in p.rows] == [r["id"] for r in source.rows]
    assert 1 < source.max_in_flight <= 4


def test_a_server_always_saying_has_more_stops_after_the_bound_of_empty_pages():
    source = Pages(total=95, size=10, always_more=True)
    pages = PagePass(source, workers=3, limit=10)
    assert sum(len(p.rows) for p in pages) == 95
    # Pages 11 to 15 are empty while has_more is true: the bound; in flight past it, 16-17.
    assert set(range(1, 16)) <= set(source.requested) <= set(range(1, 18))
    assert pages.gap is not None  # it cannot be sure: has_more still said more
    assert (pages.gap.page, pages.gap.stopped_at) == (11, 10 + MAX_EMPTY_PAGES)


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


def _version(row_id: str, moment: str) -> dict:
    return {"id": row_id, "updated_at": moment}


def _listing(pages: list[list[dict]], **kwargs: t.Any) -> Listing:
    total = len({row["id"] for page in pages for row in page})

    def fetch(number: int) -> Page:
        rows = pages[number - 1] if number <= len(pages) else []
        return Page(number, rows, number < len(pages), total)

    return Listing(fetch, workers=2, max_passes=3, limit=max(map(len, pages)), **kwargs)


@pytest.mark.parametrize("where", ["same page", "across pages"])
def test_an_older_version_first_is_followed_by_the_newer_one(where):
    old, new = _version("r1", "2026-01-07T14:30:00.000Z"), _version("r1", "2026-01-08T09:00:00Z")
    others = [_version(f"x{i}", "2026-01-01T00:00:00Z") for i in range(4)]
    if where == "same page":
        pages = [[others[0], old, new], [others[1], others[2], others[3]]]
    else:
        pages = [[others[0], old, others[1]], [others[2], new, others[3]]]
    emitted = [(row, moment) for row, moment in _listing(pages).versions()]
    versions = [row["updated_at"] for row, _ in emitted if row["id"] == "r1"]
    assert versions == [old["updated_at"], new["updated_at"]]  # the last emitted is the newest
    assert [m for row, m in emitted if row is new] == [parse_timestamp(new["updated_at"])]


@pytest.mark.parametrize("where", ["same page", "across pages"])
def test_an_older_or_identical_version_after_the_newer_one_is_not_emitted_again(where):
    new = _version("r1", "2026-01-08T09:00:00.000Z")
    same = _version("r1", "2026-01-08T09:00:00+00:00")  # the same instant, spelled otherwise
    old = _version("r1", "2026-01-08T04:00:00-05:00")  # 09:00Z minus nothing: still equal
    older = _version("r1", "2026-01-07T23:59:59.999Z")
    x = [_version(f"x{i}", "2026-01-01T00:00:00Z") for i in range(4)]
    if where == "same page":
        pages = [[new, same, old, older], x]
    else:
        pages = [[x[0], new, x[1]], [same, older, old], [x[2], x[3]]]
    listing = _listing(pages)
    emitted = [row for row in listing.rows() if row["id"] == "r1"]
    assert emitted == [new]
    assert listing.complete


def test_a_re_read_pass_emits_a_row_that_changed_in_between():
    passes = {"n": 0}

    def fetch(number: int) -> Page:
        if number == 1:
            passes["n"] += 1
        changed = "2026-01-09T00:00:00Z" if passes["n"] > 1 else "2026-01-01T00:00:00Z"
        rows = [
            _version("r0", changed),
            *(_version(f"r{i}", "2026-01-01T00:00:00Z") for i in (1, 2)),
        ]
        return Page(number, rows if number == 1 else [], False, 4)  # one row never shows

    listing = Listing(fetch, workers=1, max_passes=3)
    emitted = [(row["id"], row["updated_at"]) for row in listing.rows()]
    # Pass 2 sees r0 changed: its newer version is emitted, not dropped as "seen".
    assert emitted == [
        ("r0", "2026-01-01T00:00:00Z"),
        ("r1", "2026-01-01T00:00:00Z"),
        ("r2", "2026-01-01T00:00:00Z"),
        ("r0", "2026-01-09T00:00:00Z"),
    ]


def test_an_empty_middle_page_while_has_more_is_read_past_and_keeps_the_listing_incomplete():
    source = Pages(total=95, size=10, empty={3: None})  # page 3 is always empty
    listing = Listing(source, workers=3, max_passes=3, limit=10)
    ids = {r["id"] for r in listing.rows()}
    assert ids == {r["id"] for r in source.rows} - {r["id"] for r in source.rows[20:30]}
    assert not listing.complete  # every pass missed page 3
    assert not listing.count_disagrees  # never "two identical passes: the count is wrong"
    assert listing.passes == 3
    gap = listing.gap
    assert gap is not None
    assert (gap.page, gap.rows, gap.rows_read, gap.total_count, gap.has_more) == (
        3,
        0,
        20,
        95,
        True,
    )
    assert "page 3 was empty" in gap.describe()
    assert "20 rows read, total_count 95, has_more true" in gap.describe()


@pytest.mark.parametrize("page", [1, 4])
def test_a_page_empty_only_once_is_read_again_and_the_listing_is_complete(page):
    source = Pages(total=95, size=10, empty={page: 1})
    listing = Listing(source, workers=3, max_passes=3, limit=10)
    assert sorted(r["id"] for r in listing.rows()) == [r["id"] for r in source.rows]
    assert listing.complete
    assert listing.gap is None
    assert [(n, g.page) for n, g in listing.gaps] == [(1, page)]


def test_page_1_empty_does_not_end_the_listing_or_size_the_pages():
    source = Pages(total=95, size=10, empty={1: None})
    pages = PagePass(source, workers=3, limit=10)
    assert sum(len(p.rows) for p in pages) == 85  # pages 2 to 10 are read
    assert pages.gap is not None
    assert pages.gap.page == 1
    assert pages.page_size == 10


def test_a_short_page_1_is_not_the_page_size_and_marks_the_pass():
    def fetch(number: int) -> Page:  # page 1 lost 6 of its rows; the API's size is 10
        rows = _rows(0, 4) if number == 1 else _rows((number - 1) * 10, min(number * 10, 45))
        return Page(number, rows, number < 5, 45)

    pages = PagePass(fetch, workers=2, limit=10)
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert pages.page_size == 10
    assert pages.gap is not None
    assert (pages.gap.page, pages.gap.rows) == (1, 4)


def test_a_server_that_caps_limit_is_read_in_its_page_size_without_a_gap():
    source = Pages(total=30, size=7)  # asked for 500 a page, it sends 7
    pages = PagePass(source, workers=2, limit=500)
    assert sum(len(p.rows) for p in pages) == 30
    assert pages.page_size == 7
    assert pages.gap is None


def test_without_has_more_an_empty_page_is_read_past_to_total_count():
    source = Pages(total=95, size=10, omit_has_more=True, empty={2: 1})
    listing = Listing(source, workers=2, max_passes=3, limit=10)
    assert sorted(r["id"] for r in listing.rows()) == [r["id"] for r in source.rows]
    assert listing.complete
    assert [(n, g.page, g.has_more) for n, g in listing.gaps] == [(1, 2, None)]
