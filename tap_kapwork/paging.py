"""Page-numbered listing: parallel fetch in page order, and re-reads when rows drift.

The SDK's paginators fetch one page after another. Once page 1 has told us
`total_count`, the remaining page numbers are known, so we fetch them on a small
thread pool and still hand them on strictly in page order, with at most
`workers` pages in flight.
"""

from __future__ import annotations

import math
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tap_kapwork.errors import KapworkError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@dataclass
class Page:
    number: int
    rows: list[dict]
    has_more: bool | None  # None: the API did not say
    total_count: int | None


def more_after(page: Page, page_size: int) -> bool:
    """Whether the API says pages follow `page`: `has_more`, else `total_count`."""
    if page.has_more is not None:
        return page.has_more
    # NB: has_more may be missing while total_count is present: read to total_count.
    return page.total_count is not None and page.number * page_size < page.total_count


def iter_pages(fetch: Callable[[int], Page], *, workers: int) -> Iterator[Page]:
    """Yield pages 1, 2, … in order until the listing ends.

    Pages are planned from `total_count`, but `has_more` wins when it says more pages
    follow than the count allows (NB: a total_count too low was seen with has_more
    still true). The runaway guard: an empty page, or a page repeating the previous
    one, ends the listing, so a server that always says `has_more` cannot loop the
    tap forever.
    """
    first = fetch(1)
    yield first
    if not first.rows or not more_after(first, len(first.rows)):
        return
    if first.total_count is None:
        yield from _sequential(fetch, first)
        return
    # The server may cap `limit` below what we asked: count pages in its page size.
    page_size = len(first.rows)
    last = max(2, math.ceil(first.total_count / page_size))

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="kapwork-page")
    pending: deque[Future[Page]] = deque()
    next_number = 2
    previous_ids = _ids(first)
    try:
        while pending or next_number <= last:
            while next_number <= last and len(pending) < workers:
                pending.append(pool.submit(fetch, next_number))
                next_number += 1
            page = pending.popleft().result()
            ids = _ids(page)
            if not page.rows or ids == previous_ids:
                return  # the runaway guard; pages in flight are past the end
            yield page
            previous_ids = ids
            if page.total_count is not None:  # rows inserted while we read
                last = max(last, math.ceil(page.total_count / page_size))
            if not more_after(page, page_size):
                last = min(last, page.number)  # pages already in flight are still read
            elif page.has_more and page.number >= last:
                last = page.number + 1  # has_more says more than total_count allows
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _sequential(fetch: Callable[[int], Page], first: Page) -> Iterator[Page]:
    """Without total_count: follow has_more, and stop if the server ignores `page`."""
    previous_ids = _ids(first)
    number = 1
    while True:
        number += 1
        page = fetch(number)
        if page.rows and _ids(page) == previous_ids:
            raise KapworkError(
                f"Page {number} of the receivables listing repeats page {number - 1}: the "
                "API seems to ignore the page parameter. Stopping instead of looping."
            )
        yield page
        if not page.has_more or not page.rows:
            return
        previous_ids = _ids(page)


def _ids(page: Page) -> list[t.Any]:
    return [row.get("id") if isinstance(row, dict) else None for row in page.rows]


_MASK = (1 << 64) - 1


class Listing:
    """Every row of one filtered listing, each once, re-reading when rows drifted.

    The API pages by offset over data that changes while we read. An update to a row
    on an earlier page can shift later rows back by one, so a row that never changed
    is skipped, and its old `updated_at` keeps it out of every later incremental run.
    After each pass we compare the distinct ids seen with `total_count` and read the
    listing again, keeping only rows not yet seen, until they match.

    A `total_count` that stays above what the listing holds is not drift: drift changes
    what a re-read sees, a wrong count does not. Each pass keeps an order-independent
    fingerprint of the (id, updated_at) pairs it saw; when two consecutive passes agree
    the listing is complete (`count_disagrees` tells the caller to say so).
    """

    def __init__(self, fetch: Callable[[int], Page], *, workers: int, max_passes: int) -> None:
        self._fetch = fetch
        self._workers = workers
        self._max_passes = max_passes
        self.seen: set[str] = set()
        self.passes = 0
        self.pages = 0
        self.page_number = 0
        self.total_count: int | None = None
        self.complete = False
        self.count_disagrees = False

    @property
    def missing(self) -> int:
        return max(0, (self.total_count or 0) - len(self.seen))

    def rows(self) -> Iterator[dict]:
        previous: tuple[int, int] | None = None
        for pass_number in range(1, self._max_passes + 1):
            self.passes = pass_number
            self.total_count = None
            fingerprint = count = 0
            for page in iter_pages(self._fetch, workers=self._workers):
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
                    fingerprint += hash((row_id, row.get("updated_at")))
                    count += 1
                    if row_id in self.seen:
                        continue
                    self.seen.add(row_id)
                    yield row
                fingerprint &= _MASK
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
