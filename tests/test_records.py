"""Every RECORD validates against its SCHEMA: values normalised only when their meaning
stays the same, anything else one line naming the receivable and the field."""

from __future__ import annotations

import copy
import datetime as dt
import random
import re

import jsonschema
import pytest
from helpers import (
    API_KEY,
    assert_one_line_failure,
    discover,
    run_tap,
    tap_config,
    without_history,
)

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import (
    arrival,
    as_emitted,
    emitted_history_extras,
    emitted_history_keys,
    emitted_history_rows,
    expected_history_extras,
    expected_history_keys,
)
from tap_kapwork.records import INT64_MAX, INT64_MIN

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
assert "date-time" in FORMATS.checkers, "install rfc3339-validator (dev extra)"


def assert_every_record_validates(run) -> int:
    """The property itself: each RECORD against the SCHEMA message its stream sent."""
    checked = 0
    for stream in ("receivables", "receivable_history"):
        (schema,) = run.schemas(stream)
        validator = jsonschema.Draft202012Validator(schema["schema"], format_checker=FORMATS)
        for record in run.records(stream):
            validator.validate(record)
            checked += 1
    return checked


DATE_TIMES = ("detected_at", "updated_at", "estimated_next_update_at")


def _utc(value: str) -> str:
    """An RFC 3339 date-time as the same instant in UTC with Z, its fraction as written;
    worked out apart from the tap."""
    parts = re.fullmatch(r"(.{19})(\.\d+)?(.*)", value.upper())
    assert parts is not None
    seconds, fraction, zone = parts.groups()
    moment = dt.datetime.fromisoformat(seconds + zone.replace("Z", "+00:00"))
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + (fraction or "") + "Z"


def _normal(value, key=None):
    """What the tap may do to a value: spell an integral number as an integer, and a
    date-time in UTC with Z (the edge values have at most microseconds)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if key in DATE_TIMES and isinstance(value, str):
        return _utc(value)
    if isinstance(value, dict):
        return {k: _normal(v, k) for k, v in value.items()}
    return value


# Values the docs do not promise but the schema can hold, and the histories that carry
# every JSON type: set on a share of the receivables of the edge-case sandbox.
EDGE_FIELDS = [
    {"amount_cents": 150000.0},
    {"amount_cents": INT64_MAX},
    {"amount_cents": INT64_MIN},
    {"amount_cents": -0.0},
    {"po_number": ""},
    {"portal_status": 'Genehmigt – Zahlung geplant \u2028 "quoted" \\ \t'},  # noqa: RUF001
    {"vendor": {"id": "v", "name": None, "extra": [1, {"x": None}]}},
    {"metadata": {"nested": {"deep": [1.5, None, True]}, "empty": {}, "ünïcode": "✓"}},
    {"metadata": {"id": 7, "name": ["not", "a", "party"]}},  # any keys, any values
    {"estimated_next_update_at": "2026-01-07T10:30:00+05:30"},
    {"detected_at": "2026-01-07t10:30:00.123456z"},
    {"receivable_date": "2024-02-29", "due_date": None},
]
EDGE_CHANGES = {
    "amount_cents": {"from": 100000.0, "to": 2**70},
    "rate": {"from": 0.5, "to": 1e-7},
    "metadata": {"from": {"b": 1, "a": [None]}, "to": None},
    "flag": {"from": False, "to": True},
    "po_number": {"from": "", "to": "PO-\u00e9"},
    "tags": {"to": []},
}


@pytest.fixture(scope="module")
def edge_run():
    with Sandbox(receivables=5000, seed=8, api_key=API_KEY, same_instant_share=0.05) as sandbox:
        rng = random.Random(8)
        for record in rng.sample(sandbox.truth(), 600):
            fields = copy.deepcopy(rng.choice(EDGE_FIELDS))
            if rng.random() < 0.5:
                entry = {"changed_at": record["updated_at"], "changes": EDGE_CHANGES}
                fields["history"] = [entry, *record["history"]]
            sandbox.set_raw(record["id"], **fields)
        # Fields the docs do not list, at every level: kept in the catch-all columns.
        sandbox.add_fields("receivable", share=0.2, seed=8)
        sandbox.add_fields("entry", share=0.2, seed=9)
        sandbox.add_fields("change", share=0.2, seed=10)
        truth = sandbox.truth()
        run = run_tap(tap_config(sandbox))
    return run, truth


def test_every_record_validates_against_its_schema(edge_run):
    run, truth = edge_run
    checked = assert_every_record_validates(run)
    assert len(run.records("receivables")) == len(truth) == 5000
    assert checked > 5000 + 80_000  # every history row too


def test_edge_values_arrive_unchanged_but_for_integral_numbers(edge_run):
    run, truth = edge_run
    by_id = {r["id"]: r for r in run.records("receivables")}
    for expected in truth:
        assert by_id[expected["id"]] == _normal(as_emitted(expected))
    assert {type(r["amount_cents"]) for r in by_id.values()} <= {int, type(None)}
    assert 0 < sum("extra_fields" in r for r in by_id.values()) < 0.3 * len(truth)
    history = run.records("receivable_history")
    emitted = emitted_history_rows(history)
    assert sorted(emitted, key=repr) == sorted(_arrivals(truth), key=repr)
    assert emitted_history_extras(history) == expected_history_extras(truth)


def _arrivals(truth: list[dict]) -> list[tuple]:
    """History rows as the README says they arrive: strings, integers, booleans and null
    as they are (integral numbers as integers), anything else as JSON text, keys sorted."""

    return [
        (r["id"], e["changed_at"], field, arrival(c.get("from")), arrival(c.get("to")))
        for r in truth
        for e in r["history"]
        for field, c in e["changes"].items()
    ]


@pytest.fixture(scope="module")
def small():
    with Sandbox(receivables=30, seed=4, api_key=API_KEY) as sandbox:
        yield sandbox


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        (
            {"amount_cents": 1.5e20},
            "has amount_cents 1.5e+20 (a JSON number), which does not fit"
            " the schema's 64-bit integer",
        ),
        ({"amount_cents": 2**64}, "does not fit the schema's 64-bit integer"),
        ({"amount_cents": 12.5}, "has amount_cents 12.5 (a JSON number), which is not an integer"),
        (
            {"amount_cents": "100"},
            "has amount_cents '100' (a JSON string), which is not an integer",
        ),
        ({"receivable_date": "2026-02-30"}, "has receivable_date '2026-02-30'"),
        ({"due_date": "01/02/2026"}, "which is not a YYYY-MM-DD date"),
        ({"detected_at": "2026-01-07T10:30:00"}, "which is not an ISO 8601 date-time"),
        ({"currency": 840}, "has currency 840 (a JSON integer), which is not a string"),
        ({"vendor": "Acme"}, "has vendor 'Acme' (a JSON string), which is not an object"),
        ({"debtor": {"id": 7}}, "is not an object whose 'id' is a string"),
        ({"metadata": []}, "has metadata [] (a JSON array), which is not an object"),
    ],
)
def test_a_value_the_schema_cannot_hold_stops_the_run(small, fields, phrase):
    target = small.truth()[7]["id"]
    before = {k: v for k, v in small.dataset.records[target].items() if k in fields}
    small.set_raw(target, **fields)
    try:
        run = run_tap(tap_config(small, page_size=10), check=False)
    finally:
        small.set_raw(target, **before)
    assert_one_line_failure(run, f"Receivable {target} ", phrase, "deselect", mid_run=True)
    assert target not in {r["id"] for r in run.records("receivables")}


def test_deselecting_the_field_lets_the_run_go_on(small):
    target = small.truth()[3]["id"]
    before = small.dataset.records[target]["amount_cents"]
    small.set_raw(target, amount_cents=1.5e20)
    try:
        catalog = discover(tap_config(small))
        for entry in catalog["streams"]:
            for meta in entry["metadata"]:
                if meta["breadcrumb"] == ["properties", "amount_cents"]:
                    meta["metadata"]["selected"] = False
        run = run_tap(tap_config(small), catalog=catalog)
    finally:
        small.set_raw(target, amount_cents=before)
    assert len(run.records("receivables")) == 30
    assert all("amount_cents" not in r for r in run.records("receivables"))
    assert_every_record_validates(run)


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"updated_at": None}, "has no valid updated_at (None)"),
        ({"updated_at": "soon"}, "has no valid updated_at ('soon')"),
        (
            {"history": [{"changed_at": "yesterday", "changes": {"status": {"to": "PAID"}}}]},
            "has a history entry with changed_at 'yesterday', which is not an ISO 8601",
        ),
        (
            {"history": [{"changed_at": "2026-01-07T10:30:00", "changes": {"po_number": {}}}]},
            "with changed_at '2026-01-07T10:30:00', which is not an ISO 8601 date-time with a",
        ),
    ],
)
def test_a_receivable_the_docs_do_not_describe_is_one_line(small, fields, phrase):
    target = small.truth()[11]["id"]
    before = {k: copy.deepcopy(v) for k, v in small.dataset.records[target].items() if k in fields}
    small.set_raw(target, **fields)
    try:
        run = run_tap(tap_config(small, page_size=10), check=False)
    finally:
        small.set_raw(target, **before)
    assert_one_line_failure(run, f"Receivable {target} ", phrase, mid_run=True)


# How the API might spell one instant: (name, the spelling of a UTC Z value from the
# sandbox). The docs' own form; microseconds and +00:00; offsets west and east; more
# fraction digits than a datetime holds; lowercase t and z.
SPELLINGS = {
    "docs-Z": lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.") + f"{m.microsecond // 1000:03d}Z",
    "micro+00:00": lambda m: m.isoformat(timespec="microseconds"),
    "-05:00": lambda m: m.astimezone(dt.timezone(-dt.timedelta(hours=5))).isoformat(
        timespec="milliseconds"
    ),
    "+05:30-nanos": lambda m: (
        m.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
        .isoformat(timespec="microseconds")
        .replace("+05:30", "789+05:30")
    ),
    "lowercase": lambda m: m.strftime("%Y-%m-%dt%H:%M:%S.") + f"{m.microsecond // 1000:03d}z",
}
UTC_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z").fullmatch


def _respell(value: str, spelling: str) -> str:
    return SPELLINGS[spelling](dt.datetime.fromisoformat(value.replace("Z", "+00:00")))


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def spelled():
    """A sandbox, and its truth as served in the docs' form (UTC, Z, milliseconds)."""
    with Sandbox(receivables=60, seed=12, api_key=API_KEY) as sandbox:
        yield sandbox, sandbox.truth()


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_date_times_are_emitted_in_utc_whatever_offset_the_api_used(spelled, spelling):
    sandbox, truth = spelled
    for record in truth:
        fields = {k: _respell(record[k], spelling) for k in DATE_TIMES if record.get(k)}
        history = [
            {**e, "changed_at": _respell(e["changed_at"], spelling)} for e in record["history"]
        ]
        sandbox.set_raw(record["id"], **fields, history=history)
    run = run_tap(tap_config(sandbox))

    served = sandbox.truth()
    assert served != truth or spelling == "docs-Z"  # the API really spoke this spelling
    by_id = {r["id"]: r for r in run.records("receivables")}
    assert set(by_id) == {r["id"] for r in truth}
    emitted_stamps = [r[k] for r in by_id.values() for k in DATE_TIMES if r.get(k)]
    emitted_stamps += [r["changed_at"] for r in run.records("receivable_history")]
    assert emitted_stamps
    assert all(UTC_Z(stamp) for stamp in emitted_stamps)
    for expected in truth:
        got = by_id[expected["id"]]
        for key in DATE_TIMES:
            if expected.get(key):
                assert _instant(got[key]) == _instant(expected[key])  # the same instant
    if spelling in ("docs-Z", "-05:00", "lowercase"):  # the truth's milliseconds
        # Every field as the truth, and the history key the same as from `Z`.
        assert by_id == {r["id"]: without_history(r) for r in truth}
        keys = emitted_history_keys(run.records("receivable_history"))
        assert set(keys) == expected_history_keys(truth)
    (bookmark,) = {s["replication_key_value"] for s in run.state["bookmarks"].values()}
    assert UTC_Z(bookmark)
    assert_every_record_validates(run)
