"""Singer message output: buffered msgspec writes, and a lean path for plain records."""

from __future__ import annotations

import datetime as dt
import sys
import time
import typing as t
from functools import cached_property

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import SingerMessageType

from tap_kapwork.client import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk import Stream
    from singer_sdk.singerlib.encoding.simple import Message

FLUSH_BYTES = 1 << 16


class BufferedMsgSpecWriter(MsgSpecWriter):
    """The SDK's msgspec writer flushes stdout after every message: a system call per
    record. Here RECORDs collect up to 64 KiB; every other message (SCHEMA, STATE, …)
    flushes them first, so a STATE never reaches the target before the records it covers.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._prefixes: dict[str, bytes] = {}
        self._suffix = b""
        self._extracted_tick = -1.0

    @override
    def write_message(self, message: Message) -> None:
        self._pending += self.format_message(message)
        if message.type != SingerMessageType.RECORD or len(self._pending) >= FLUSH_BYTES:
            self.flush()

    def write_records(self, stream: str, records: Iterable[dict[str, t.Any]]) -> int:
        """Encode RECORDs straight into the buffer: no message objects, and the parts
        that are the same for every record of the stream encoded once."""
        now = time.monotonic()
        if now - self._extracted_tick >= 1.0:  # time_extracted to the second is plenty
            self._extracted_tick = now
            extracted_at = encoder.encode(dt.datetime.now(dt.timezone.utc).isoformat())
            self._suffix = b',"time_extracted":' + extracted_at + b"}\n"
        prefix = self._prefixes.get(stream)
        if prefix is None:
            prefix = self._prefixes[stream] = (
                b'{"type":"RECORD","stream":' + encoder.encode(stream) + b',"record":'
            )
        pending, suffix, encode_into = self._pending, self._suffix, encoder.encode_into
        count = 0
        for record in records:
            pending += prefix
            encode_into(record, pending, -1)
            pending += suffix
            count += 1
        if len(pending) >= FLUSH_BYTES:
            self.flush()
        return count

    def flush(self) -> None:
        if self._pending:
            sys.stdout.buffer.write(self._pending)
            self._pending.clear()
        sys.stdout.flush()


class PlainRecordOutput:
    """Streams whose records, as built, are already what the target must receive.

    The SDK's record path pops deselected properties, conforms types, runs stream maps
    and builds a message object for every record: most of a record's CPU time. When
    nothing is deselected and no stream map or flattening applies, none of that changes
    a record, so it is encoded directly. Otherwise the SDK's path runs unchanged.
    """

    @cached_property
    def _plain_output(self) -> bool:
        stream = t.cast("Stream", self)
        maps = stream.stream_maps
        every_property_selected = all(
            stream.mask.get(("properties", name), True) for name in stream.schema["properties"]
        )
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == stream.name
            and not maps[0].flattening_enabled
            and every_property_selected
            and isinstance(stream._tap.message_writer, BufferedMsgSpecWriter)
        )

    def _write_record_message(self, record: dict[str, t.Any]) -> None:
        self.write_records((record,))

    def write_records(self, records: Iterable[dict[str, t.Any]]) -> int:
        """Write RECORD messages; returns how many."""
        stream = t.cast("Stream", self)
        stream.state_manager.is_flushed = False
        if self._plain_output:
            writer = t.cast(BufferedMsgSpecWriter, stream._tap.message_writer)
            return writer.write_records(stream.name, records)
        count = 0
        for record in records:
            super()._write_record_message(record)  # type: ignore[misc]
            count += 1
        return count
