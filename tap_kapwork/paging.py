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
    has_more: bool
    total_count: int | None


def iter_pages(fetch: Callable[[int], Page], *, workers: int) -> Iterator[Page]:
    """Yield pages 1, 2, … in order until the listing ends.

    Never asks for a page beyond what `total_count` allows, so a server that keeps
    saying `has_more` cannot loop the tap forever.
    """
    first = fetch(1)
    yield first
    if not first.has_more or not first.rows:
        return
    if first.total_count is None:
        yield from _sequential(fetch, first)
        return
    # The server may cap `limit` below what we asked: count pages in its page size.
    page_size = len(first.rows)
    last = math.ceil(first.total_count / page_size)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="kapwork-page")
    pending: deque[Future[Page]] = deque()
    next_number = 2
    try:
        while pending or next_number <= last:
            while next_number <= last and len(pending) < workers:
                pending.append(pool.submit(fetch, next_number))
                next_number += 1
            page = pending.popleft().result()
            yield page
            if not page.has_more:
                last = min(last, page.number)  # pages already in flight are still read
            elif page.total_count is not None:  # rows inserted while we read
                last = max(last, math.ceil(page.total_count / page_size))
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
    return [row.get("id") for row in page.rows]


class Listing:
    """Every row of one filtered listing, each once, re-reading when rows drifted.

    The API pages by offset over data that changes while we read. An update to a row
    on an earlier page can shift later rows back by one, so a row that never changed
    is skipped, and its old `updated_at` keeps it out of every later incremental run.
    After each pass we compare the distinct ids seen with `total_count` and read the
    listing again, keeping only rows not yet seen, until they match.
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

    @property
    def missing(self) -> int:
        return max(0, (self.total_count or 0) - len(self.seen))

    def rows(self) -> Iterator[dict]:
        for pass_number in range(1, self._max_passes + 1):
            self.passes = pass_number
            self.total_count = None
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
                    if row_id in self.seen:
                        continue
                    self.seen.add(row_id)
                    yield row
            if self.total_count is None or self.missing == 0:
                self.complete = True
                return
