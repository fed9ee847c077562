"""The sandbox's API adds fields the docs do not list (kapwork_sandbox/evolution.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from test_sandbox import call, list_all

from kapwork_sandbox import Sandbox
from kapwork_sandbox.evolution import DEFAULT_FIELDS, DOCUMENTED, KINDS, value_of

# A JSON kind -> the Python types json.loads gives for it.
TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (float,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
    "date-time": (str,),
}


def control(sandbox: Sandbox, method: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/fields", data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _undeclared(value: dict, level: str) -> dict:
    return {k: v for k, v in value.items() if k not in DOCUMENTED[level]}


def test_every_kind_at_every_level_by_default():
    for level, fields in DEFAULT_FIELDS.items():
        assert sorted(fields.values()) == sorted(KINDS), level
    for kind in KINDS:
        value = value_of(kind, "a key")
        assert type(value) in TYPES[kind], kind
        assert value == value_of(kind, "a key"), "deterministic"
    assert value_of("number", "a key") % 1 != 0, "a number with a fraction"
    stamps = {value_of("date-time", f"k{i}") for i in range(20)}
    assert {s[-1] for s in stamps} == {"Z", "0"}, "both Z and +05:30 spellings"


def test_added_fields_are_answered_at_each_level_and_are_in_the_truth(sandbox):
    ids = sorted(r["id"] for r in sandbox.truth())[:5]
    sandbox.add_fields("receivable", share=0.5, seed=3)
    sandbox.add_fields("entry", {"changed_by": "string"}, ids=ids)
    sandbox.add_fields("change", share=1.0)
    truth = {r["id"]: r for r in sandbox.truth()}
    pages = list_all(sandbox, verified_since="all", history_limit=500, **{"expand[]": "history"})
    listed = {r["id"]: r for r in pages}
    assert listed.keys() == truth.keys()
    with_receivable_fields = set()
    for rid, record in listed.items():
        assert record == {k: v for k, v in truth[rid].items() if k != "metadata"}
        extra = _undeclared(record, "receivable")
        if extra:
            with_receivable_fields.add(rid)
            assert extra.keys() == DEFAULT_FIELDS["receivable"].keys()
            for name, kind in DEFAULT_FIELDS["receivable"].items():
                assert type(extra[name]) in TYPES[kind], name
        for entry in record["history"]:
            expected = {"changed_by": entry["changed_by"]} if rid in ids else {}
            assert _undeclared(entry, "entry") == expected
            for change in entry["changes"].values():
                assert _undeclared(change, "change").keys() == DEFAULT_FIELDS["change"].keys()
    assert 0.35 * len(listed) < len(with_receivable_fields) < 0.65 * len(listed)
    # The single endpoint answers the same fields; the data itself did not change.
    rid = ids[0]
    status, single = call(sandbox, f"/v1/receivables/{rid}", history_limit=500)
    assert status == 200
    assert single == truth[rid]
    assert sandbox.dataset.truth()[0].keys() <= DOCUMENTED["receivable"]


def test_values_differ_between_receivables_entries_and_changes(sandbox):
    sandbox.add_fields("change", {"reason_code": "string"})
    codes = [
        change["reason_code"]
        for r in sandbox.truth()
        for e in r["history"]
        for change in e["changes"].values()
    ]
    assert len(set(codes)) > 0.9 * len(codes)


def test_control_endpoint_adds_and_clears_fields(sandbox):
    rid = sandbox.truth()[0]["id"]
    added = control(
        sandbox, "POST", {"level": "receivable", "fields": {"paid_at": "date-time"}, "ids": [rid]}
    )
    assert added == {"level": "receivable", "fields": {"paid_at": "date-time"}, "share": 1.0}
    truth = {r["id"]: r for r in control_truth(sandbox)}
    assert "paid_at" in truth[rid]
    assert sum("paid_at" in r for r in truth.values()) == 1
    assert call(sandbox, f"/v1/receivables/{rid}")[1]["paid_at"] == truth[rid]["paid_at"]
    control(sandbox, "DELETE")
    assert all("paid_at" not in r for r in control_truth(sandbox))
    for wrong in ({"level": "page"}, {"fields": {"status": "string"}}, {"fields": {"x": "date"}}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            control(sandbox, "POST", wrong)
        assert refused.value.code == 400


def control_truth(sandbox: Sandbox) -> list[dict]:
    with urllib.request.urlopen(f"{sandbox.url}/_sandbox/truth", timeout=10) as response:
        return json.load(response)["data"]
