"""The `receivables` and `receivable_history` streams."""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import threading
import time
import typing as t
from contextlib import contextmanager
from functools import cached_property

from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL

from tap_kapwork.client import KapworkStream, override
from tap_kapwork.errors import BadRequestError, KapworkError
from tap_kapwork.history import HistoryCompleter, HistoryLimits, history_rows
from tap_kapwork.output import BufferedMsgSpecWriter, PlainRecordOutput
from tap_kapwork.paging import Listing, Page
from tap_kapwork.records import ReceivableConformer
from tap_kapwork.timestamps import (
    UTC,
    Covered,
    format_bookmark,
    format_verified_since,
    parse_timestamp,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context

# Read the listing again at most this many times when rows moved between pages.
MAX_PASSES = 3
# The API's documented default history_limit: the floor when it rejects larger ones.
API_DEFAULT_HISTORY_LIMIT = 10
# setting name -> the list endpoint's filter parameter (and the state partition key)
FILTERS = {"vendor_ids": "vendor_id", "debtor_ids": "debtor_id", "statuses": "status"}

PARTY = th.ObjectType(th.Property("id", th.StringType), th.Property("name", th.StringType))
STATUSES = "PENDING, APPROVED, PAID, SOLD, DISPUTED, ACKNOWLEDGED"
# A changed field's value keeps its JSON type when it is a string (dates included), an
# integer, a boolean or null. Loaders pick one column type for the field: with these
# types target-duckdb and target-postgres choose a text column. Objects, arrays and
# fractions (none are documented) arrive as their JSON text, see `plain_value`.
HISTORY_VALUE = th.CustomType({"type": ["string", "integer", "boolean", "null"]})
# Bounded to 64 bits so that loaders create a bigint column (unbounded: hugeint/numeric).
INT64 = th.IntegerType(minimum=-(2**63), maximum=2**63 - 1)


def filter_partitions(config: t.Mapping[str, t.Any]) -> list[dict] | None:
    """One partition per combination of the configured filters, or None without filters."""
    axes = [
        (param, list(dict.fromkeys(config.get(setting) or [])))
        for setting, param in FILTERS.items()
    ]
    axes = [(param, values) for param, values in axes if values]
    if not axes:
        return None
    params = [param for param, _ in axes]
    return [
        dict(zip(params, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))
    ]


class ReceivablesStream(PlainRecordOutput, KapworkStream):
    """Receivables, read incrementally by `updated_at` through `verified_since`."""

    name = "receivables"
    path = "/v1/receivables"
    primary_keys = ("id",)
    replication_key = "updated_at"
    # The API documents no sort order: bookmarks only advance when a listing is complete.
    is_sorted = False
    # Records are projected onto the schema's fields in `_project`, and the values are
    # already JSON types; skipping the SDK's per-field conformance roughly halves the
    # CPU spent per record (see benchmarks/).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    schema = th.PropertiesList(
        th.Property("id", th.StringType, required=True, description="Kapwork id (rcv_… or rec_…)"),
        th.Property("object", th.StringType),
        th.Property("vendor_receivable_id", th.StringType, description="Vendor's invoice number"),
        th.Property("vendor", PARTY),
        th.Property("debtor", PARTY),
        th.Property("amount_cents", INT64, description="May exceed 2^31 or be negative"),
        th.Property("currency", th.StringType),
        th.Property("receivable_date", th.DateType),
        th.Property("due_date", th.DateType),
        th.Property("status", th.StringType, description=f"Normalized: {STATUSES}, or newer"),
        th.Property("portal_status", th.StringType, description="Status as shown in the portal"),
        th.Property("po_number", th.StringType),
        th.Property("detected_at", th.DateTimeType),
        th.Property("updated_at", th.DateTimeType, required=True),
        th.Property("estimated_next_update_at", th.DateTimeType),
        th.Property("metadata", th.ObjectType(additional_properties=True)),
    ).to_dict()

    _FIELDS = frozenset(schema["properties"])
    _params_lock = threading.Lock()

    @property
    @override
    def partitions(self) -> list[dict] | None:
        return filter_partitions(self.config)

    @cached_property
    def history(self) -> ReceivableHistoryStream:
        return next(s for s in self.child_streams if isinstance(s, ReceivableHistoryStream))

    def covered_until(self, stream: Stream, context: Context | None) -> Covered | None:
        """The later of `start_date` and `stream`'s bookmark: what earlier runs covered."""
        state = stream.get_context_state(context)
        bookmark = start = None
        if (
            stream.replication_method == REPLICATION_INCREMENTAL
            and state.get("replication_key") == stream.replication_key
            and state.get("replication_key_value")
        ):
            bookmark = Covered(parse_timestamp(state["replication_key_value"]))
        if self.config.get("start_date"):
            start = Covered(parse_timestamp(self.config["start_date"]), inclusive=True)
        if bookmark and start:
            return bookmark if bookmark.until >= start.until else start
        return bookmark or start

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        # Records are buffered by the tap's writer; the SDK's sync loop is final and has
        # no end-of-sync hook, so the buffer is flushed where the listing ends.
        try:
            with fewer_gc_passes():
                yield from self._sync_listing(context)
        finally:
            writer = self.message_writer
            if isinstance(writer, BufferedMsgSpecWriter):
                writer.flush()
            if self.retry_stats.total:
                self.logger.info("HTTP retries: %s", self.retry_stats.summary())

    def _sync_listing(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        history = self.history if self.history.selected else None
        covered = {s: self.covered_until(s, context) for s in (self, history) if s and s.selected}
        if not covered:
            return
        # One listing serves both streams, from the earlier of their bounds.
        bounds = list(covered.values())
        since = None if None in bounds else min(b.until for b in bounds if b)
        history_covered = covered.get(history) if history else None
        receivables_covered = covered.get(self)
        if history:
            history.write_schema_once()
            self.logger.info(
                "History changes are read from %s",
                history_covered.until.isoformat() if history_covered else "the beginning",
            )

        started = dt.datetime.now(UTC)
        params = self._list_params(context, since, with_history=history is not None)
        completer = self._completer() if history else None
        listing = Listing(
            lambda number: self._fetch_page(params, number, completer, history_covered),
            workers=self.config["max_parallel_requests"],
            max_passes=MAX_PASSES,
        )
        progress = Progress(self, listing, completer)
        watermark: dt.datetime | None = None
        with history.get_record_counter() if history else _NoCounter() as history_count:
            for row in listing.rows():
                updated_at = self._updated_at(row)
                if watermark is None or updated_at > watermark:
                    watermark = updated_at
                if history:
                    rows = history_rows(row["id"], row.get("history") or [], history_covered)
                    emitted = history.write_records(rows)
                    history_count.increment(emitted)
                    progress.history_rows += emitted
                progress.tick()
                if receivables_covered is None or receivables_covered.admits(updated_at):
                    yield self._project(row)
        progress.done()

        if not listing.complete:
            self.logger.warning(
                "After %d passes, %d of the %d receivables the API counted were never seen "
                "(rows kept moving between pages). The bookmark stays where it was, so the "
                "next run reads this range again.",
                listing.passes,
                listing.missing,
                listing.total_count,
            )
            return
        if watermark is None:
            return
        # Capped at the run's start: a receivable changed while we paged, after we had
        # read it, has an updated_at before the last one we saw, but not before `started`.
        bookmark = format_bookmark(min(watermark, started))
        for stream in covered:
            if stream.replication_method != REPLICATION_INCREMENTAL:
                continue
            state = stream.get_context_state(context)
            state["replication_key"] = stream.replication_key
            state["replication_key_value"] = bookmark

    def _list_params(
        self, context: Context | None, since: dt.datetime | None, *, with_history: bool
    ) -> dict[str, t.Any]:
        expand = []
        if with_history:
            expand.append("history")
        if self.config["include_metadata"] and self.mask.get(("properties", "metadata"), True):
            expand.append("metadata")
        params: dict[str, t.Any] = dict(context or {})
        # Always explicit: the API's own default is "the last 24 hours".
        params["verified_since"] = format_verified_since(since) if since else "all"
        params["limit"] = self.config["page_size"]
        if expand:
            params["expand[]"] = expand
        if with_history:
            params["history_limit"] = self.config["history_limit"]
        return params

    def _completer(self) -> HistoryCompleter:
        return HistoryCompleter(self.get_json, self.path, self.logger, HistoryLimits())

    def _fetch_page(
        self,
        params: dict[str, t.Any],
        number: int,
        completer: HistoryCompleter | None,
        covered: Covered | None,
    ) -> Page:
        """Runs on a worker thread: one list page, with its histories made complete."""
        while True:
            request = {**params, "page": number}
            asked = request.get("history_limit")
            try:
                body = self.get_json(self.path, request)
                break
            except BadRequestError as exc:
                if exc.param != "history_limit" or not asked or asked <= API_DEFAULT_HISTORY_LIMIT:
                    raise
                lower = max(API_DEFAULT_HISTORY_LIMIT, asked // 2)
                with self._params_lock:
                    if params.get("history_limit") == asked:
                        params["history_limit"] = lower
                        self.logger.warning(
                            "The API rejected history_limit=%d on the list; using %d (longer "
                            "histories are completed one receivable at a time).",
                            asked,
                            lower,
                        )
        data = body.get("data")
        if not isinstance(data, list):
            raise KapworkError(
                f"GET {self.path} answered JSON without a 'data' list (keys: "
                f"{', '.join(sorted(body)) or 'none'}). Check that api_url points at the "
                "Kapwork Partner API."
            )
        if completer is not None and asked:
            for row in data:
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    completer.complete(row, asked, covered)
        total = body.get("total_count")
        return Page(
            number=number,
            rows=data,
            has_more=bool(body.get("has_more")),
            total_count=total if isinstance(total, int) and not isinstance(total, bool) else None,
        )

    def _updated_at(self, row: dict) -> dt.datetime:
        try:
            return parse_timestamp(row["updated_at"])
        except (KeyError, TypeError, ValueError):
            raise KapworkError(
                f"Receivable {row['id']} has no valid updated_at ({row.get('updated_at')!r}); "
                "the API response does not match the documented receivable object."
            ) from None

    def _project(self, row: dict) -> dict:
        # Only schema fields: `history` travels in its own stream, and fields the API
        # adds later must not reach targets that have no column for them. Each value is
        # checked against the schema (records.py): every RECORD validates against it.
        return self._conform(row)

    @cached_property
    def _conform(self) -> ReceivableConformer:
        selected = [n for n in self._FIELDS if self.mask.get(("properties", n), True)]
        return ReceivableConformer(self.schema, selected)

    @override
    def _process_record(
        self,
        record: dict,
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        # The SDK would copy the partition's filter values into every record and sync
        # the child stream once per receivable (a SCHEMA, a state partition and log
        # lines each time). History is emitted from get_records instead.
        return

    @override
    def _increment_stream_state(
        self, latest_record: dict, *, context: Context | None = None
    ) -> None:
        # Bookmarks advance once per completed listing (see get_records), comparing
        # instants rather than the timestamp strings the SDK would compare.
        return


class ReceivableHistoryStream(PlainRecordOutput, Stream):
    """One row per changed field per history entry of a receivable."""

    name = "receivable_history"
    parent_stream_type = ReceivablesStream
    # change_hash tells apart two changes of one field stamped with the same instant.
    primary_keys = ("receivable_id", "changed_at", "field", "change_hash")
    replication_key = "changed_at"
    is_sorted = False
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    schema = th.PropertiesList(
        th.Property("receivable_id", th.StringType, required=True),
        th.Property("changed_at", th.DateTimeType, required=True),
        th.Property("field", th.StringType, required=True, description="The field that changed"),
        th.Property(
            "change_hash",
            th.StringType,
            required=True,
            description="First 16 hex digits of SHA-256 of the JSON [from_value, to_value]",
        ),
        th.Property("from_value", HISTORY_VALUE, description="Value before the change"),
        th.Property("to_value", HISTORY_VALUE, description="Value after the change"),
    ).to_dict()

    _schema_written = False

    @property
    @override
    def partitions(self) -> list[dict] | None:
        return filter_partitions(self.config)

    def write_schema_once(self) -> None:
        """The parent syncs once per partition; targets need one SCHEMA per run."""
        if not self._schema_written:
            self._write_schema_message()
            self._schema_written = True

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        # Never called: rows come embedded in the receivables listing (no request per
        # receivable) and are emitted by ReceivablesStream.get_records.
        return iter(())


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while pages are read.

    Decoded pages are trees of small dicts and lists that reference counting frees; none
    form cycles. With the default thresholds the collector runs every 700 allocations and
    rescans the growing older generations: measured, it more than doubled the time to
    decode a page (42 µs per receivable instead of 17).
    """
    thresholds = gc.get_threshold()
    gc.freeze()  # what import and setup built is never garbage: stop rescanning it
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
