"""The private parts of the Singer SDK this tap relies on, named one by one.

Public hooks are used wherever one does the job. Where none does, the tap reaches into
the SDK; an SDK upgrade that renames or reshapes one of these must fail here, by name,
not somewhere deep in a sync. Each entry says why the private hook is needed.
"""

from __future__ import annotations

import inspect
import json

import pytest
from singer_sdk import Stream
from singer_sdk.helpers import _batch

from tap_kapwork.streams import ReceivableHistoryStream, ReceivablesStream
from tap_kapwork.tap import TapKapwork

# (method of singer_sdk.Stream, the parameters we call or override it with, why)
PRIVATE_STREAM_METHODS = [
    (
        "_process_record",
        ["self", "record", "child_context", "partition_context"],
        "overridden to a no-op: the SDK would copy partition values into every record and "
        "sync receivable_history once per receivable; history rows come from the listing",
    ),
    (
        "_increment_stream_state",
        ["self", "latest_record", "context"],
        "overridden to a no-op: bookmarks advance once per complete listing (sync.py), "
        "comparing instants, not the SDK's per-record string comparison",
    ),
    (
        "_write_record_message",
        ["self", "record"],
        "overridden by output.LeanRecordPath: records that need no map, flattening or "
        "deselection are encoded straight into the buffered writer",
    ),
    (
        "_write_schema_message",
        ["self"],
        "called once per run for receivable_history, whose records the SDK never syncs",
    ),
]


@pytest.mark.parametrize(
    ("name", "parameters", "why"),
    PRIVATE_STREAM_METHODS,
    ids=[m[0] for m in PRIVATE_STREAM_METHODS],
)
def test_private_stream_methods_keep_their_signatures(name, parameters, why):
    method = getattr(Stream, name, None)
    assert callable(method), f"singer_sdk.Stream.{name} is gone ({why})"
    assert list(inspect.signature(method).parameters) == parameters, why


def test_the_overrides_are_the_ones_the_sdk_calls():
    """Our overrides shadow the SDK's methods (not a misspelt twin)."""
    assert "_process_record" in vars(ReceivablesStream)
    assert "_increment_stream_state" in vars(ReceivablesStream)
    for stream in (ReceivablesStream, ReceivableHistoryStream):
        assert stream._write_record_message is not Stream._write_record_message


def test_a_stream_reaches_its_tap_as_underscore_tap():
    """`Stream._tap`: the SDK has no public accessor from a stream to its tap; the writer,
    the shared rate-limit gate and retry statistics live on the tap (client.kapwork_tap)."""
    tap = TapKapwork(
        config={"api_key": "kw_contract_test_key", "api_url": "http://127.0.0.1:9"},
        validate_config=False,
    )
    for stream in tap.streams.values():
        assert stream._tap is tap
    assert tap.streams["receivables"].kapwork_tap is tap


def test_state_manager_is_flushed_is_the_flag_the_sdk_reads():
    """output.LeanRecordPath clears it as the SDK's own _write_record_message does, so
    the SDK writes a STATE message after our records."""
    source = inspect.getsource(Stream._write_record_message)
    assert "state_manager.is_flushed = False" in source
    assert "state_manager.is_flushed" in inspect.getsource(Stream._write_state_message)


def test_batch_config_and_message_come_from_singer_sdk_helpers_batch():
    """output.BatchFiles writes the SDK's own BATCH message and reads its BatchConfig; the
    SDK exports neither (Stream.get_batch_config, public, returns a BatchConfig)."""
    config = _batch.BatchConfig.from_dict(
        {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": "file:///tmp", "prefix": "p-"},
            "batch_size": 10,
        }
    )
    assert (config.encoding.format, config.encoding.compression) == ("jsonl", "gzip")
    assert (config.storage.root, config.storage.prefix, config.batch_size) == (
        "file:///tmp",
        "p-",
        10,
    )
    message = _batch.SDKBatchMessage(
        stream="receivables", encoding=config.encoding, manifest=["file:///tmp/x.json.gz"]
    )
    assert message.to_dict()["type"] == "BATCH"
    assert message.to_dict()["manifest"] == ["file:///tmp/x.json.gz"]


def test_the_sdk_still_logs_the_line_errors_filter_drops():
    """errors.ReportedFailureFilter drops the SDK's "An unhandled error occurred" line for
    failures the tap reports in one line itself: it matches the SDK's wording."""
    source = inspect.getsource(Stream.sync)
    assert '"An unhandled error occurred while syncing' in source
    assert "level=logging.ERROR" in source


def test_flattening_keeps_an_object_without_properties_as_one_json_column():
    """streams.free_form_object relies on how the SDK flattens (singer_sdk.helpers.
    _flattening, behind the public `flattening_enabled`): an object declared without
    `properties` is one key, declared a string, whose value is the object's JSON text;
    only objects with `properties` are expanded into `parent__child` keys."""
    from singer_sdk.helpers._flattening import flatten_record, flatten_schema

    schema = {
        "type": "object",
        "properties": {
            "vendor": ReceivablesStream.schema["properties"]["vendor"],
            "metadata": ReceivablesStream.schema["properties"]["metadata"],
        },
    }
    assert "properties" not in schema["properties"]["metadata"]
    for depth in (1, 5):
        flat = flatten_schema(schema, max_level=depth)
        assert flat["properties"]["metadata"] == {"type": ["string", "null"]}
        assert set(flat["properties"]) == {"vendor__id", "vendor__name", "metadata"}
        record = {"vendor": {"id": "v", "name": "n"}, "metadata": {"a": {"b": [1]}, "c": None}}
        row = flatten_record(record, flat, max_level=depth)
        assert set(row) == {"vendor__id", "vendor__name", "metadata"}
        assert json.loads(row["metadata"]) == record["metadata"]
