"""A catalog written by an older tap-kapwork (Meltano's cached catalog after an upgrade)."""

from __future__ import annotations

import copy
import typing as t

from helpers import discover, run_tap, tap_config

if t.TYPE_CHECKING:
    from kapwork_sandbox import Sandbox


def _without(catalog: dict, stream: str, field: str) -> dict:
    """The catalog as a tap without `field` in `stream` would have written it."""
    older = copy.deepcopy(catalog)
    (entry,) = [s for s in older["streams"] if s["tap_stream_id"] == stream]
    del entry["schema"]["properties"][field]
    entry["metadata"] = [m for m in entry["metadata"] if m["breadcrumb"] != ["properties", field]]
    return older


def test_a_property_an_older_catalog_lacks_is_kept_and_declared(sandbox: Sandbox) -> None:
    config = tap_config(sandbox)
    older = _without(discover(config), "receivables", "currency")
    run = run_tap(config, catalog=older)

    (schema,) = run.schemas("receivables")
    assert "currency" in schema["schema"]["properties"]
    records = run.records("receivables")
    assert records
    assert all("currency" in record for record in records)
    for record in records:  # every record key is declared in its SCHEMA
        assert set(record) <= set(schema["schema"]["properties"])
    assert "currency" in run.stderr
    assert "--refresh-catalog" in run.stderr


def test_a_deselected_property_stays_out(sandbox: Sandbox) -> None:
    config = tap_config(sandbox)
    catalog = discover(config)
    (entry,) = [s for s in catalog["streams"] if s["tap_stream_id"] == "receivables"]
    for meta in entry["metadata"]:
        if meta["breadcrumb"] == ["properties", "currency"]:
            meta["metadata"]["selected"] = False
    run = run_tap(config, catalog=catalog)
    (schema,) = run.schemas("receivables")
    assert "currency" not in schema["schema"]["properties"]
    assert not [r for r in run.records("receivables") if "currency" in r]
    assert "refresh-catalog" not in run.stderr
