"""Page-numbered listing: parallel fetch in page order, gaps noticed, re-reads when needed.

The SDK's paginators fetch one page after another. Once page 1 has told us
`total_count`, the remaining page numbers are known, so we fetch them on a small
thread pool and still hand them on strictly in page order, with at most
`workers` pages in flight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tap_kapwork.errors import KapworkError
from tap_kapwork.seen import SeenIds
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@dataclass
class Page:
    number: int
    rows: list[dict]
    has_more: bool | None  # None: the API did not say
    total_count: int | None


# Empty pages read past, in a row, while the API says more follow, before a pass stops.
MAX_EMPTY_PAGES = 5


@dataclass(frozen=True)
class Gap:
    """Why a pass cannot be sure it read everything: the first page that was empty, or
    shorter than the API's page size, while the API said more follow."""

    page: int
    rows: int  # on that page
    rows_read: int  # in the pass, that page included
    total_count: int | None
    has_more: bool | None
    stopped_at: int | None = None  # the pass stopped here: MAX_EMPTY_PAGES empty in a row

    def describe(self) -> str:
        what = "empty" if not self.rows else f"short ({self.rows} rows)"
        more = "no has_more" if self.has_more is None else f"has_more {str(self.has_more).lower()}"
        count = "no total_count" if self.total_count is None else f"total_count {self.total_count}"
        text = (
            f"page {self.page} was {what} while the API said more follow "
            f"({self.rows_read} rows read, {count}, {more})"
        )
        if self.stopped_at is not None:
            text += (
                f"; pages {self.stopped_at - MAX_EMPTY_PAGES + 1} to {self.stopped_at} were "
                "all empty, so the pass stopped there"
            )
        return text


class PagePass:
    """One read of the listing: pages 1, 2, … in order, and whether it read everything.

    The API says more pages follow with `has_more`, or, when has_more is missing, with
    `total_count`. Pages are planned from total_count, but has_more wins when it says
    more pages follow than the count allows (NB: a total_count too low was seen with
    has_more still true). The pass ends when the API says nothing follows, or when a
    page repeats the previous one (an API that ignores `page` past its end).

    NB: the API was seen to answer an empty page (page 1 included) while has_more was
    true, with rows on later pages. An empty or short page while more follow is not the
    end: the rows that belong there were not read (`gap` names the first such page), and
    the pass reads on, for at most MAX_EMPTY_PAGES empty pages in a row.
    """

    def __init__(
        self, fetch: Callable[[int], Page], *, workers: int, limit: int | None = None
    ) -> None:
        self._fetch = fetch
        self._workers = max(1, workers)
        self._limit = limit  # the `limit` asked, when the caller knows it
        self._most = 0  # most rows one page held
        self._shortest: Gap | None = None  # the shortest non-empty page while more followed
        self.gap: Gap | None = None
        self.rows_read = 0
        self.total_count: int | None = None

    @property
    def page_size(self) -> int:
        """The API's page size as it shows: the `limit` asked, lowered to the most rows
        one page held (a server that caps `limit`), never raised above it."""
        if self._limit is None:
            return self._most
        return min(self._limit, self._most) if self._most else self._limit

    def _more(self, page: Page) -> bool:
        """Whether the API says pages follow `page`: `has_more`, else `total_count`."""
        if page.has_more is not None:
            return page.has_more
        # NB: has_more may be missing while total_count is present: read to total_count.
        return self.total_count is not None and page.number * self.page_size < self.total_count

    def _planned(self, page: Page, more: bool) -> int:
        """The last page number to ask for, as far as the API has said."""
        if not more:
            return page.number
        size = self.page_size
        counted = math.ceil(self.total_count / size) if self.total_count and size else 0
        return max(page.number + 1, counted)

    def __iter__(self) -> Iterator[Page]:
        pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="kapwork-page")
        pending: deque[Future[Page]] = deque()
        next_number = last = 1
        ended = False  # the API said nothing follows: pages in flight are read, no more asked
        previous_ids: list[t.Any] | None = None
        empty = 0  # empty pages in a row while more followed
        try:
            while pending or next_number <= last:
                while next_number <= last and len(pending) < self._workers:
                    pending.append(pool.submit(self._fetch, next_number))
                    next_number += 1
                page = pending.popleft().result()
                if ended:  # asked before the end was known: past it, or rows inserted meanwhile
                    if page.rows:
                        self.rows_read += len(page.rows)
                        yield page
                    continue
                ids = _ids(page)
                if page.rows and ids == previous_ids:
                    if self.total_count is None:
                        raise KapworkError(
                            f"Page {page.number} of the receivables listing repeats page "
                            f"{page.number - 1}: the API seems to ignore the page parameter. "
                            "Stopping instead of looping."
                        )
                    break  # the API ignores `page` past its end; pages in flight are too
                if page.total_count is not None:  # rows inserted while we read
                    self.total_count = page.total_count
                self.rows_read += len(page.rows)
                self._most = max(self._most, len(page.rows))
                more = self._more(page)
                last = self._planned(page, more)
                ended = not more
                if more and not page.rows:
                    empty += 1
                    self._note_gap(page)
                    if empty >= MAX_EMPTY_PAGES:
                        assert self.gap is not None
                        self.gap = dataclasses.replace(self.gap, stopped_at=page.number)
                        last, ended = page.number, True
                elif page.rows:
                    empty = 0
                    previous_ids = ids
                    if more:
                        self._note_short(page)
                yield page
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        # Judged at the end: the page size shows only once a full page has been seen.
        short = self._shortest
        if self.gap is None and short is not None and short.rows < self.page_size:
            self.gap = short

    def _at(self, page: Page) -> Gap:
        return Gap(page.number, len(page.rows), self.rows_read, self.total_count, page.has_more)

    def _note_gap(self, page: Page) -> None:
        if self.gap is None:
            self.gap = self._at(page)

    def _note_short(self, page: Page) -> None:
        if self._shortest is None or len(page.rows) < self._shortest.rows:
            self._shortest = self._at(page)


def iter_pages(
    fetch: Callable[[int], Page], *, workers: int, limit: int | None = None
) -> Iterator[Page]:
    """Pages 1, 2, … of one pass, in order (see PagePass)."""
    return iter(PagePass(fetch, workers=workers, limit=limit))


def _ids(page: Page) -> list[t.Any]:
    return [row.get("id") if isinstance(row, dict) else None for row in page.rows]


def _updated_at(row: dict) -> dt.datetime:
    """The version of a row: its updated_at, or the earliest instant when it has none
    (callers that need a valid one pass `version`, see sync.updated_at)."""
    try:
        return parse_timestamp(row["updated_at"])
    except (KeyError, TypeError, ValueError):
        return _EARLIEST


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


_MASK = (1 << 64) - 1


class Listing:
    """Every row of one filtered listing, each in its newest version, re-reading when a
    pass may have missed rows.

    Rows repeat: for each id the newest version (by `updated_at`, as an instant) is
    emitted, and an older or identical one after it is not (see SeenIds).

    The API pages by offset over data that changes while we read. An update to a row
    on an earlier page can shift later rows back by one, so a row that never changed
    is skipped, and its old `updated_at` keeps it out of every later incremental run.
    After each pass we compare the distinct ids seen with `total_count` and read the
    listing again, emitting only rows newer than what was emitted, until they match.
    A pass with a gap (an empty or short page while more followed, see PagePass) is
    always read again: the listing is complete only after a pass without one.

    A `total_count` that stays above what the listing holds is not drift: drift changes
    what a re-read sees, a wrong count does not. Each pass keeps an order-independent
    fingerprint of the (id, updated_at) pairs it saw; when two consecutive passes agree
    (neither with a gap) the listing is complete (`count_disagrees` tells the caller).
    """

    def __init__(
        self,
        fetch: Callable[[int], Page],
        *,
        workers: int,
        max_passes: int,
        limit: int | None = None,
        version: Callable[[dict], dt.datetime] = _updated_at,
    ) -> None:
        self._fetch = fetch
        self._workers = workers
        self._max_passes = max_passes
        self._limit = limit
        self._version = version
        self.seen = SeenIds()
        self.passes = 0
        self.pages = 0
        self.page_number = 0
        self.total_count: int | None = None
        self.complete = False
        self.count_disagrees = False
        # (pass number, gap) of every pass that may have missed rows
        self.gaps: list[tuple[int, Gap]] = []

    @property
    def missing(self) -> int:
        return max(0, (self.total_count or 0) - len(self.seen))

    def rows(self) -> Iterator[dict]:
        for row, _ in self.versions():
            yield row

    def versions(self) -> Iterator[tuple[dict, dt.datetime]]:
        """Each row to emit, with its `updated_at` (the version it is)."""
        previous: tuple[int, int] | None = None
        for pass_number in range(1, self._max_passes + 1):
            self.passes = pass_number
            self.total_count = None
            fingerprint = count = 0
            pages = PagePass(self._fetch, workers=self._workers, limit=self._limit)
            for page in pages:
                self.pages += 1
                self.page_number = page.number
                if page.total_count is not None:
                    self.total_count = page.total_count
                for row in page.rows:
                    row_id = row.get("id") if isinstance(row, dict) else None
                    if not isinstance(row_id, str) or not row_id:
                        raise KapworkError(
                            f"Page {page.number} of the receivables listing has an entry "
                            "without a string 'id'; the response does not match the docs."
                        )
                    moment = self._version(row)
                    fingerprint += hash((row_id, row.get("updated_at")))
                    count += 1
                    if self.seen.newer(row_id, moment):
                        yield row, moment
                fingerprint &= _MASK
            if pages.gap is not None:
                self.gaps.append((pass_number, pages.gap))
                previous = None  # a pass that missed rows proves nothing about the count
                continue
            if self.total_count is None or self.missing == 0:
                self.complete = True
                self.count_disagrees = self.total_count is not None and (
                    len(self.seen) != self.total_count
                )
                return
            if (count, fingerprint) == previous:
                # Two passes saw the same rows: the count is wrong, nothing moved.
                self.complete = self.count_disagrees = True
                return
            previous = (count, fingerprint)

    @property
    def gap(self) -> Gap | None:
        """Why the listing is not complete, when the last pass may have missed rows."""
        if self.complete or not self.gaps or self.gaps[-1][0] != self.passes:
            return None
        return self.gaps[-1][1]
