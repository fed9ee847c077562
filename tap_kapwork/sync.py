"""One sync of the receivables listing, in five named steps.

    bounds → params → listing → emit → bookmark

`ListingSync.run` reads top to bottom as that flow. One listing serves both streams:
`receivables` rows are yielded to the SDK, `receivable_history` rows are written from
the embedded histories as the listing is read.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import typing as t
from dataclasses import dataclass

from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL

from tap_kapwork.errors import BadRequestError, KapworkError
from tap_kapwork.history import HistoryCompleter, HistoryLimits, history_rows, history_since
from tap_kapwork.paging import Listing, Page
from tap_kapwork.timestamps import (
    UTC,
    format_bookmark,
    format_verified_since,
    parse_http_date,
    parse_timestamp,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk import Stream
    from singer_sdk.helpers.types import Context

    from tap_kapwork.streams import ReceivableHistoryStream, ReceivablesStream

# Read the listing again at most this many times when rows moved between pages.
MAX_PASSES = 3
# The API's `Date` header has a one-second resolution; the cap moves back this much more.
DATE_MARGIN = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Bounds:
    """Where one sync reads from, all inclusive; None means from the beginning.

    `since` is the listing's `verified_since`: the earliest bound of the selected
    streams. `history` is the bound for `receivable_history` rows.
    """

    since: dt.datetime | None
    history: dt.datetime | None


def stream_bound(stream: Stream, context: Context | None) -> dt.datetime | None:
    """From when `stream` needs changes: its bookmark minus `lookback_seconds`, but never
    before `start_date`. A bookmark is the instant a finished run covered; rows exactly
    at it are read again (the bound is inclusive, duplicates upsert onto themselves).
    """
    config = stream.config
    state = stream.get_context_state(context)
    candidates = []
    if config.get("start_date"):
        candidates.append(parse_timestamp(config["start_date"]))
    if (
        stream.replication_method == REPLICATION_INCREMENTAL
        and state.get("replication_key") == stream.replication_key
        and state.get("replication_key_value")
    ):
        lookback = dt.timedelta(seconds=config["lookback_seconds"])
        candidates.append(parse_timestamp(state["replication_key_value"]) - lookback)
    return max(candidates) if candidates else None


def updated_at(row: dict) -> dt.datetime:
    try:
        return parse_timestamp(row["updated_at"])
    except (KeyError, TypeError, ValueError):
        raise KapworkError(
            f"Receivable {row['id']} has no valid updated_at ({row.get('updated_at')!r}); "
            "the API response does not match the documented receivable object."
        ) from None


class ListingSync:
    """One sync of one partition of the receivables listing."""

    def __init__(self, stream: ReceivablesStream, context: Context | None) -> None:
        self.stream = stream
        self.context = context
        history = stream.history
        self.history: ReceivableHistoryStream | None = history if history.selected else None
        self.streams: list[Stream] = [s for s in (stream, self.history) if s and s.selected]
        self.limits = HistoryLimits()
        self.completer = (
            HistoryCompleter(stream.get_json, stream.path, stream.logger, self.limits)
            if self.history
            else None
        )
        self.watermark: dt.datetime | None = None  # the newest updated_at read
        self.api_now: dt.datetime | None = None  # "now" on the API's clock, at page 1
        self._params_lock = threading.Lock()

    def run(self) -> Iterator[dict[str, t.Any]]:
        if not self.streams:
            return
        bounds = self.bounds()
        params = self.params(bounds)
        listing = self.listing(params, bounds)
        yield from self.emit(listing, bounds)
        self.bookmark(listing)

    # 1. bounds -------------------------------------------------------------------------

    def bounds(self) -> Bounds:
        per_stream = {s: stream_bound(s, self.context) for s in self.streams}
        found = [b for b in per_stream.values() if b is not None]
        since = min(found) if len(found) == len(per_stream) else None
        history = per_stream.get(self.history) if self.history else None
        if self.history:
            self.stream.logger.info(
                "History changes are read from %s",
                history.isoformat() if history else "the beginning",
            )
        return Bounds(since, history)

    # 2. params -------------------------------------------------------------------------

    def params(self, bounds: Bounds) -> dict[str, t.Any]:
        config = self.stream.config
        expand = []
        if self.history:
            expand.append("history")
        if config["include_metadata"] and self.stream.mask.get(("properties", "metadata"), True):
            expand.append("metadata")
        params: dict[str, t.Any] = dict(self.context or {})
        # Always explicit: the API's own default is "the last 24 hours".
        params["verified_since"] = format_verified_since(bounds.since) if bounds.since else "all"
        params["limit"] = config["page_size"]
        if expand:
            params["expand[]"] = expand
        if self.history:
            params["history_limit"] = config["history_limit"]
        return params

    # 3. listing ------------------------------------------------------------------------

    def listing(self, params: dict[str, t.Any], bounds: Bounds) -> Listing:
        return Listing(
            lambda number: self.fetch_page(params, number, bounds.history),
            workers=self.stream.config["max_parallel_requests"],
            max_passes=MAX_PASSES,
            limit=params["limit"],
            version=updated_at,
        )

    def fetch_page(self, params: dict[str, t.Any], number: int, bound: dt.datetime | None) -> Page:
        """Runs on a worker thread: one list page, with its histories made complete."""
        body, limit = self._get_page(params, number)
        data = body.get("data")
        if not isinstance(data, list):
            raise KapworkError(
                f"GET {self.stream.path} answered JSON without a 'data' list (keys: "
                f"{', '.join(sorted(body)) or 'none'}). Check that api_url points at the "
                "Kapwork Partner API."
            )
        if self.completer is not None and limit:
            self._complete_histories(self.completer, data, limit, bound)
        total = body.get("total_count")
        has_more = body.get("has_more")
        return Page(
            number=number,
            rows=data,
            has_more=None if has_more is None else bool(has_more),
            total_count=total if isinstance(total, int) and not isinstance(total, bool) else None,
        )

    def _get_page(self, params: dict[str, t.Any], number: int) -> tuple[dict, int | None]:
        """The page's JSON body, and the history_limit the API accepted for it."""
        while True:
            with self._params_lock:
                request = {**params, "page": number}
            limit = request.get("history_limit")
            local_start = dt.datetime.now(UTC)
            started = time.monotonic()
            try:
                body = self.stream.get_json(self.stream.path, request)
                break
            except BadRequestError as exc:
                if exc.param != "history_limit" or not limit:
                    raise
                self._lower_history_limit(params, limit, exc)
        if number == 1 and self.api_now is None:
            self.api_now = self._api_now(local_start, time.monotonic() - started)
        if limit:
            self.limits.accept(limit)
        return body, limit

    @staticmethod
    def _complete_histories(
        completer: HistoryCompleter, data: list, limit: int, bound: dt.datetime | None
    ) -> None:
        """Each row's history, completed back to the same bound its rows are emitted from."""
        for row in data:
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                since = bound and history_since(row, bound, updated_at(row))
                completer.complete(row, limit, since)

    def _lower_history_limit(
        self, params: dict[str, t.Any], rejected: int, exc: BadRequestError
    ) -> None:
        """The API rejected `rejected` on the list: HistoryLimits names the next value."""
        with self._params_lock:
            if params.get("history_limit") != rejected:
                return  # another worker already lowered it
            lower = self.limits.reject(rejected)
            if lower is None:
                raise exc
            params["history_limit"] = lower
        self.stream.logger.warning(
            "The API rejected history_limit=%d on the list; using %d (longer histories "
            "are completed one receivable at a time).",
            rejected,
            lower,
        )

    def _api_now(self, local_start: dt.datetime, duration: float) -> dt.datetime:
        """When the API began serving page 1, on the API's clock, never later.

        NB: the bookmark cap must not come from this machine's clock, which may run ahead
        of the API's (then a change made during the run would be stamped before the cap
        and never read again). The API's `Date` header says when it answered, to the
        second: minus one second and minus the whole request's duration, measured here,
        it is not later than when the API began serving.
        """
        date = parse_http_date(self.stream.last_response_date())
        if date is not None:
            return date - DATE_MARGIN - dt.timedelta(seconds=duration)
        self.stream.warn_once(
            "The API's answers carry no Date header: bookmarks are capped by this "
            "machine's clock, which may differ from the API's (lookback_seconds covers "
            "a small difference)."
        )
        return local_start

    # 4. emit ---------------------------------------------------------------------------

    def emit(self, listing: Listing, bounds: Bounds) -> Iterator[dict[str, t.Any]]:
        """Every receivable the listing returned, and its history rows from the bound."""
        history = self.history
        if history:
            history.write_schema_once()
        progress = Progress(self.stream, listing, self.completer)
        project = self.stream.project
        with history.get_record_counter() if history else _NoCounter() as history_count:
            for row, moment in listing.versions():  # each id's newest version wins
                if self.watermark is None or moment > self.watermark:
                    self.watermark = moment
                if history:
                    # The same bound the completer used on the worker: history_since
                    # depends only on the row (its newest change survives completion).
                    since = bounds.history and history_since(row, bounds.history, moment)
                    rows = history_rows(
                        row["id"], row.get("history") or [], since, history.catch_alls
                    )
                    emitted = history.write_records(rows)
                    history_count.increment(emitted)
                    progress.history_rows += emitted
                progress.tick()
                # NB: no filter on updated_at: every row the API returned is emitted.
                yield project(row)
        progress.done()

    # 5. bookmark -----------------------------------------------------------------------

    def bookmark(self, listing: Listing) -> None:
        if not self._listing_is_complete(listing):
            return
        if self.watermark is None:
            return
        cap = self.api_now or dt.datetime.now(UTC)
        # Capped at the API's "now" when the listing began: a receivable changed while we
        # paged, after we had read it, is stamped after the cap and read next time.
        bookmark = min(self.watermark, cap)
        for stream in self.streams:
            if stream.replication_method != REPLICATION_INCREMENTAL:
                continue
            state = stream.get_context_state(self.context)
            previous = (
                state.get("replication_key_value")
                if state.get("replication_key") == stream.replication_key
                else None
            )
            value = bookmark
            if previous:  # a look-back re-read never moves a bookmark back
                value = max(value, parse_timestamp(previous))
            state["replication_key"] = stream.replication_key
            state["replication_key_value"] = format_bookmark(value)

    def _listing_is_complete(self, listing: Listing) -> bool:
        """Whether the bookmark may advance; warns when the API's counts disagree."""
        logger = self.stream.logger
        passes: dict[str, list[str]] = {}  # the same gap on several passes: one line
        for number, gap in listing.gaps:
            passes.setdefault(gap.describe(), []).append(str(number))
        for gap_text, numbers in passes.items():
            # NB: seen: empty pages while has_more was true, with rows on later pages.
            which = f"passes {', '.join(numbers)}" if len(numbers) > 1 else f"pass {numbers[0]}"
            logger.warning("Receivables listing, %s: %s.", which, gap_text)
        if listing.gap is not None:
            logger.warning(
                "The receivables listing may have rows this run did not read (its last "
                "pass, %d, met the gap above). The bookmark stays where it was, so the next "
                "run reads this range again.",
                listing.passes,
            )
            return False
        if not listing.complete:
            logger.warning(
                "After %d passes, %d of the %d receivables the API counted were never seen "
                "(rows kept moving between pages). The bookmark stays where it was, so the "
                "next run reads this range again.",
                listing.passes,
                listing.missing,
                listing.total_count,
            )
            return False
        if listing.count_disagrees:
            seen = len(listing.seen)
            if listing.total_count is not None and seen < listing.total_count:
                reason = (
                    f"two identical passes returned {seen} distinct receivables, so nothing "
                    "moved between pages: the count is wrong"
                )
            else:
                reason = f"has_more led to {seen} distinct receivables, all of them read"
            logger.warning(
                "The API's total_count says %s but %s. The bookmark advances.",
                listing.total_count,
                reason,
            )
        return True


class _NoCounter:
    def __enter__(self) -> _NoCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def increment(self, value: int = 1) -> None:
        return None


class Progress:
    """Logs pages, rows and rate every `progress_interval` seconds on long runs."""

    def __init__(
        self, stream: ReceivablesStream, listing: Listing, completer: HistoryCompleter | None
    ):
        self._stream = stream
        self._listing = listing
        self._completer = completer
        self._interval = float(stream.config["progress_interval"])
        self._started = self._last = time.monotonic()
        self.receivables = 0
        self.history_rows = 0

    def tick(self) -> None:
        self.receivables += 1
        if self.receivables % 256 == 0 and time.monotonic() - self._last >= self._interval:
            self.log("in progress")

    def done(self) -> None:
        self.log("done")

    def log(self, phase: str) -> None:
        now = time.monotonic()
        self._last = now
        listing = self._listing
        total = listing.total_count
        pages = -(-total // max(1, self._stream.config["page_size"])) if total else "?"
        self._stream.logger.info(
            "Receivables listing %s: pass %d, page %d of %s, %d receivables, %d history "
            "rows, %d single-receivable requests, %.0f receivables/s",
            phase,
            max(1, listing.passes),
            listing.page_number,
            pages,
            self.receivables,
            self.history_rows,
            self._completer.requests if self._completer else 0,
            self.receivables / max(now - self._started, 1e-6),
        )
