"""A NUL character (U+0000) through `meltano run tap-kapwork target-postgres`.

PostgreSQL's text and jsonb cannot hold U+0000: without `sanitize_null_text_characters`
one such character fails the whole load. meltano.yml turns it on; these tests load NUL in a
text column (`po_number`), in `vendor.name` and at the top of `metadata` (jsonb), and in
a history value, and read back with SQL exactly what arrived.
"""

from __future__ import annotations

import copy
import json
import typing as t

import psycopg
import pytest
from e2e_helpers import conninfo, meltano, meltano_env, target_postgres_env
from helpers import API_KEY

from kapwork_sandbox import Sandbox

NUL, REPLACEMENT = "\u0000", "\ufffd"
SCHEMA = "kapwork_nul"


def _env(sandbox: Sandbox, postgres: dict, tmp_path: t.Any, schema: str) -> dict[str, str]:
    return meltano_env(sandbox, tmp_path, **target_postgres_env(postgres, schema))


def with_nul(sandbox: Sandbox) -> dict[str, str]:
    """NUL in po_number, vendor.name, metadata.note and a history value: role -> id."""
    truth = sandbox.truth()
    ids = [r["id"] for r in truth if r["history"]][:4]
    text, vendor, metadata, history = ids
    by_id = {r["id"]: r for r in truth}
    sandbox.set_raw(text, po_number=f"PO{NUL}-1")
    sandbox.set_raw(vendor, vendor={**by_id[vendor]["vendor"], "name": f"Nul{NUL} Vendor"})
    sandbox.set_raw(metadata, metadata={"note": f"top{NUL}level", "terms": "NET30"})
    entries = copy.deepcopy(by_id[history]["history"])
    entries[0]["changes"] = {"po_number": {"from": f"PO{NUL}-old", "to": f"PO{NUL}-new"}}
    sandbox.set_raw(history, history=entries)
    return {"text": text, "vendor": vendor, "metadata": metadata, "history": history}


# RECORD messages, and the BATCH files tap-kapwork-batch sends (the README's command for
# PostgreSQL): the loader sanitizes both the same way.
@pytest.mark.parametrize("extractor", ["tap-kapwork", "tap-kapwork-batch"])
def test_nul_in_text_jsonb_and_history_is_replaced_by_the_project_settings(
    postgres, tmp_path, extractor
):
    schema = SCHEMA if extractor == "tap-kapwork" else f"{SCHEMA}_batch"
    with Sandbox(receivables=40, seed=5, api_key=API_KEY) as sandbox:
        ids = with_nul(sandbox)
        meltano("run", extractor, "target-postgres", env=_env(sandbox, postgres, tmp_path, schema))
        truth = sandbox.truth()
    with psycopg.connect(conninfo(postgres)) as conn:
        (count,) = conn.execute(f"select count(*) from {schema}.receivables").fetchone() or (0,)
        po_number, vendor_name, note = (
            conn.execute(
                f"select po_number from {schema}.receivables where id = %s", (ids["text"],)
            ).fetchone()[0],
            conn.execute(
                f"select vendor->>'name' from {schema}.receivables where id = %s",
                (ids["vendor"],),
            ).fetchone()[0],
            conn.execute(
                f"select metadata->>'note' from {schema}.receivables where id = %s",
                (ids["metadata"],),
            ).fetchone()[0],
        )
        history = conn.execute(
            f"select from_value::text, to_value::text from {schema}.receivable_history "
            "where receivable_id = %s and field = 'po_number' and to_value::text like %s",
            (ids["history"], "%new%"),
        ).fetchall()
    assert count == len(truth)
    # The loader's sanitize_null_text_characters writes U+FFFD (the replacement character).
    assert po_number == f"PO{REPLACEMENT}-1"
    assert vendor_name == f"Nul{REPLACEMENT} Vendor"
    assert note == f"top{REPLACEMENT}level"
    assert [tuple(v.strip('"') for v in row) for row in history] == [
        (f"PO{REPLACEMENT}-old", f"PO{REPLACEMENT}-new")
    ]


def test_without_the_setting_one_nul_fails_the_load(postgres, tmp_path):
    """The loader's default (what this project had before): the run fails whole."""
    with Sandbox(receivables=40, seed=5, api_key=API_KEY) as sandbox:
        with_nul(sandbox)
        env = _env(sandbox, postgres, tmp_path, "kapwork_nul_kept")
        env["TARGET_POSTGRES_SANITIZE_NULL_TEXT_CHARACTERS"] = "false"
        with pytest.raises(AssertionError) as failed:
            meltano("run", "tap-kapwork", "target-postgres", env=env)
    # text: 'invalid byte sequence for encoding "UTF8": 0x00'; jsonb: '\u0000 cannot be …'
    assert "0x00" in str(failed.value) or "\\u0000 cannot be" in str(failed.value)


# The README's stream map: metadata as JSON text with each escaped NUL replaced, read back.
# The SDK keeps metadata's object type (the property exists; json.loads has no fixed type).
NUL_MAP = {
    "receivables": {
        "metadata": "json.loads(json.dumps(metadata).replace('\\\\u0000', '\\\\ufffd'))"
    }
}


def test_nested_nul_in_metadata_needs_the_documented_stream_map(postgres, tmp_path):
    """The loader replaces NUL only in a column's value or one level down in it; deeper in
    `metadata` the load fails, unless the README's stream map replaces it in the tap."""
    metadata = {"custom": {"cost_center": f"CC{NUL}1"}, "tags": [f"a{NUL}"], "ok": "plain"}
    with Sandbox(receivables=40, seed=5, api_key=API_KEY) as sandbox:
        rid = sandbox.truth()[0]["id"]
        sandbox.set_raw(rid, metadata=metadata)
        env = _env(sandbox, postgres, tmp_path, "kapwork_nul_nested")
        with pytest.raises(AssertionError) as failed:
            meltano("run", "tap-kapwork", "target-postgres", env=env)
        assert "\\u0000 cannot be converted to text" in str(failed.value)

        env["TAP_KAPWORK_STREAM_MAPS"] = json.dumps(NUL_MAP)
        env["MELTANO_DATABASE_URI"] = f"sqlite:///{tmp_path / 'meltano-mapped.db'}"
        meltano("run", "tap-kapwork", "target-postgres", env=env)
        truth = sandbox.truth()
    with psycopg.connect(conninfo(postgres)) as conn:
        rows = dict(conn.execute("select id, metadata from kapwork_nul_nested.receivables"))
        (kind,) = conn.execute(
            "select data_type from information_schema.columns where table_schema = "
            "'kapwork_nul_nested' and table_name = 'receivables' and column_name = 'metadata'"
        ).fetchone() or ("",)
    assert kind == "jsonb"
    assert rows[rid] == {
        "custom": {"cost_center": f"CC{REPLACEMENT}1"},
        "tags": [f"a{REPLACEMENT}"],
        "ok": "plain",
    }
    assert {k: v for k, v in rows.items() if k != rid} == {
        r["id"]: r["metadata"] for r in truth if r["id"] != rid
    }
