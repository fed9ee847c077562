"""The `receivables` and `receivable_history` streams."""

from __future__ import annotations

import gc
import itertools
import typing as t
from contextlib import contextmanager
from functools import cached_property

from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_kapwork.client import KapworkStream, override
from tap_kapwork.output import BufferedMsgSpecWriter, LeanRecordPath
from tap_kapwork.records import ReceivableConformer
from tap_kapwork.sync import ListingSync
from tap_kapwork.undeclared import (
    CHANGE_EXTRAS,
    ENTRY_EXTRAS,
    RECEIVABLE_EXTRAS,
    CatchAll,
    HistoryCatchAlls,
    history_catch_alls,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context
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


def free_form_object() -> th.CustomType:
    """An object whose keys are open-ended and vary per portal (`metadata`), or per API
    version (the catch-alls of fields the tap does not declare, undeclared.py): one JSON
    column everywhere, flattened or not.

    Declared with no `properties` at all (not an empty `"properties": {}`): the SDK's
    flattening (`flattening_enabled`, in the tap or in an SDK-based loader) then keeps it
    as one key whose value is the object's JSON text, declared `["string", "null"]`. With
    `"properties": {}` it recursed into the object's keys, emitted `metadata__…` keys
    the SCHEMA never declared (meltanolabs-target-csv stopped) or dropped the column
    (pipelinewise loaders). Declaring the keys is no answer: they are not known
    in advance. tests/test_sdk_contract.py pins the SDK behaviour this relies on.
    """
    return th.CustomType({"type": ["object", "null"], "additionalProperties": True})


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


class ReceivablesStream(LeanRecordPath, KapworkStream):
    """Receivables, read incrementally by `updated_at` through `verified_since`."""

    name = "receivables"
    path = "/v1/receivables"
    primary_keys = ("id",)
    replication_key = "updated_at"
    # The API documents no sort order: bookmarks only advance when a listing is complete.
    is_sorted = False
    # Records are projected onto the schema's fields in `project`, and the values are
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
        th.Property(
            "metadata", free_form_object(), description="The portal's fields, as the API sent them"
        ),
        th.Property(
            RECEIVABLE_EXTRAS,
            free_form_object(),
            description="Fields the API sent that the tap does not declare, name -> value",
        ),
    ).to_dict()

    # The API's fields the tap declares; `history` has a stream of its own.
    _FIELDS = frozenset(schema["properties"]) - {RECEIVABLE_EXTRAS}
    _KNOWN = _FIELDS | {"history"}

    @property
    @override
    def partitions(self) -> list[dict] | None:
        return filter_partitions(self.config)

    @cached_property
    def history(self) -> ReceivableHistoryStream:
        return next(s for s in self.child_streams if isinstance(s, ReceivableHistoryStream))

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Run one listing sync (see tap_kapwork.sync) for this partition."""
        # Records are buffered by the tap's writer; the SDK's sync loop is final and has
        # no end-of-sync hook, so the buffer is flushed where the listing ends.
        try:
            with fewer_gc_passes():
                yield from ListingSync(self, context).run()
        finally:
            writer = self.message_writer
            if isinstance(writer, BufferedMsgSpecWriter):
                writer.flush()
            if self.retry_stats.total:
                self.logger.info("HTTP retries: %s", self.retry_stats.summary())

    def project(self, row: dict) -> dict:
        # The schema's fields, each value checked against the schema (records.py): every
        # RECORD validates against it. `history` travels in its own stream; fields the
        # API adds later go to `extra_fields` (undeclared.py).
        record = self._conform(row)
        # Most rows carry no undeclared key: comparing key counts finds those that may.
        if len(row) != len(record) + ("history" in row):
            extras = self._extras(row, row.get("id"))
            if extras is not None:
                record[RECEIVABLE_EXTRAS] = extras
        return record

    @cached_property
    def _extras(self) -> CatchAll:
        return CatchAll(
            "receivables",
            "a key of a receivable",
            self._KNOWN,
            f"receivables.{RECEIVABLE_EXTRAS}",
            kept=self.mask.get(("properties", RECEIVABLE_EXTRAS), True),
            logger=self.logger,
        )

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


class ReceivableHistoryStream(LeanRecordPath, Stream):
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
        th.Property(
            ENTRY_EXTRAS,
            free_form_object(),
            description="Keys of the history entry beyond changed_at and changes",
        ),
        th.Property(
            CHANGE_EXTRAS,
            free_form_object(),
            description="Keys of this field's change beyond from and to",
        ),
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

    @cached_property
    def catch_alls(self) -> HistoryCatchAlls:
        """Where the keys of history entries and changes that the tap does not declare go."""
        selected = self.mask.get
        return history_catch_alls(
            entry_kept=selected(("properties", ENTRY_EXTRAS), True),
            change_kept=selected(("properties", CHANGE_EXTRAS), True),
            logger=self.logger,
        )

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
