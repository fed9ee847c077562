"""Fields the API sends that the tap does not declare are kept in the catch-all columns,
and each is named once per run in a WARNING (tap_kapwork/undeclared.py)."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml
from helpers import (
    API_KEY,
    assert_records_validate,
    discover,
    readme_block,
    run_tap,
    tap_config,
)

from kapwork_sandbox import Sandbox
from kapwork_sandbox.evolution import DEFAULT_FIELDS
from kapwork_sandbox.testing import as_emitted, emitted_history_extras, expected_history_extras

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
CATCH_ALLS = {
    "receivables": ["extra_fields"],
    "receivable_history": ["entry_extra_fields", "change_extra_fields"],
}
# Where each level's fields are named in the log, and where they are kept.
WHERE = {
    "receivable": ("receivables", "receivables.extra_fields"),
    "entry": ("receivables.history[]", "receivable_history.entry_extra_fields"),
    "change": ("receivables.history[].changes.*", "receivable_history.change_extra_fields"),
}


@pytest.fixture(scope="module")
def evolved():
    """Every kind of field at every level, on a share of the receivables each."""
    with Sandbox(receivables=400, seed=14, api_key=API_KEY) as sandbox:
        sandbox.add_fields("receivable", share=0.3, seed=1)
        sandbox.add_fields("entry", share=0.5, seed=2)
        sandbox.add_fields("change", share=0.2, seed=3)
        yield sandbox


@pytest.fixture(scope="module")
def evolved_run(evolved):
    return run_tap(tap_config(evolved)), evolved.truth()


def assert_kept(run, truth: list[dict]) -> None:
    """Every value at every level arrives in its catch-all, equal to the truth, and every
    RECORD validates against its stream's SCHEMA."""
    receivables = {r["id"]: r for r in run.records("receivables")}
    assert receivables == {r["id"]: as_emitted(r) for r in truth}
    history = run.records("receivable_history")
    assert emitted_history_extras(history) == expected_history_extras(truth)
    assert_records_validate(run)


def warnings_for(run, level: str, name: str) -> list[str]:
    where = WHERE[level][0]
    return [line for line in run.stderr.splitlines() if f"The API sent {where}.{name} (" in line]


def test_every_undeclared_value_arrives_in_its_catch_all(evolved_run):
    run, truth = evolved_run
    assert_kept(run, truth)
    extras = [r["extra_fields"] for r in run.records("receivables") if "extra_fields" in r]
    assert 0.2 * len(truth) < len(extras) < 0.4 * len(truth)
    assert all(e.keys() == DEFAULT_FIELDS["receivable"].keys() for e in extras)
    history = run.records("receivable_history")
    assert sum("entry_extra_fields" in r for r in history) > 0.3 * len(history)
    assert 0 < sum("change_extra_fields" in r for r in history) < 0.4 * len(history)


def test_one_warning_per_field_naming_it_where_it_was_seen_and_where_it_is_kept(evolved_run):
    run, truth = evolved_run
    carriers = {r["id"] for r in truth if "payment_reference" in r}
    for level, fields in DEFAULT_FIELDS.items():
        kept_in = WHERE[level][1]
        for name in fields:
            (line,) = warnings_for(run, level, name)
            assert "| WARNING" in line
            assert line.endswith(
                f"which the tap does not declare (first on {first_on(line)}): its values "
                f"are kept in {kept_in}.{name}."
            )
    (line,) = warnings_for(run, "receivable", "payment_reference")
    assert first_on(line) in carriers
    assert line.split("| ")[-1] == (
        "The API sent receivables.payment_reference (a key of a receivable), which the tap "
        f"does not declare (first on {first_on(line)}): its values are kept in "
        "receivables.extra_fields.payment_reference."
    )


def first_on(line: str) -> str:
    found = re.search(r"\(first on ((?:rec|rcv)_[0-9a-f]{32})\)", line)
    assert found, line
    return found.group(1)


def test_a_catalog_discovered_before_the_api_added_fields_keeps_them():
    with Sandbox(receivables=120, seed=5, api_key=API_KEY) as sandbox:
        catalog = select_all(discover(tap_config(sandbox)))
        sandbox.add_fields("receivable", {"payment_reference": "string", "tags": "array"})
        sandbox.add_fields("entry", {"changed_by": "string"}, share=0.5)
        sandbox.add_fields("change", {"reason_code": "string"}, share=0.5)
        run = run_tap(tap_config(sandbox), catalog=catalog)
        assert_kept(run, sandbox.truth())
    assert len(warnings_for(run, "change", "reason_code")) == 1


def test_a_catalog_from_an_older_tap_without_catch_alls_still_keeps_the_values(evolved):
    catalog = select_all(discover(tap_config(evolved)))
    for entry in catalog["streams"]:
        for name in CATCH_ALLS[entry["tap_stream_id"]]:
            del entry["schema"]["properties"][name]
            entry["metadata"] = [
                m for m in entry["metadata"] if m["breadcrumb"] != ["properties", name]
            ]
    run = run_tap(tap_config(evolved), catalog=catalog)
    assert_kept(run, evolved.truth())
    for stream, names in CATCH_ALLS.items():
        (schema,) = run.schemas(stream)
        assert set(names) <= set(schema["schema"]["properties"])
        # catalog.complete_catalog: one WARNING per stream names what it added
        assert f"The catalog given for {stream} has no {', '.join(names)}" in run.stderr


def test_a_deselected_catch_all_keeps_nothing_and_says_so_by_name(evolved):
    catalog = select_all(discover(tap_config(evolved)))
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] in [
                ["properties", n] for n in CATCH_ALLS[entry["tap_stream_id"]]
            ]:
                meta["metadata"]["selected"] = False
    run = run_tap(tap_config(evolved), catalog=catalog)
    for stream, names in CATCH_ALLS.items():
        assert run.records(stream)
        assert not [r for r in run.records(stream) if set(names) & r.keys()]
    for level, fields in DEFAULT_FIELDS.items():
        column = WHERE[level][1]
        for name in fields:
            (line,) = warnings_for(run, level, name)
            assert line.endswith(
                f"its values were NOT kept, because {column} is deselected in the catalog. "
                f"Select {column} (e.g. `select: [{column.split('.')[0]}.*]` in meltano.yml) "
                "to keep them."
            ), line


def test_a_field_named_like_a_catch_all_is_kept_inside_it():
    with Sandbox(receivables=50, seed=6, api_key=API_KEY) as sandbox:
        sandbox.add_fields("receivable", {"extra_fields": "string", "EXTRA": "object"})
        run = run_tap(tap_config(sandbox))
        assert_kept(run, sandbox.truth())
    (record, *_) = run.records("receivables")
    assert record["extra_fields"].keys() == {"extra_fields", "EXTRA"}


def test_fields_first_seen_in_an_incremental_run(sandbox):
    first = run_tap(tap_config(sandbox))
    assert not [line for line in first.stderr.splitlines() if "does not declare" in line]
    ids = sandbox.mutate(12, seed=4)
    sandbox.add_fields("receivable", {"paid_at": "date-time"}, ids=ids)
    sandbox.add_fields("entry", {"changed_by": "object"}, ids=ids)
    sandbox.add_fields("change", {"reason_code": "string"}, ids=ids[:6])
    second = run_tap(tap_config(sandbox), state=first.state)
    truth = {r["id"]: r for r in sandbox.truth()}
    emitted = {r["id"]: r for r in second.records("receivables")}
    assert set(ids) <= emitted.keys()
    for rid in ids:
        assert emitted[rid] == as_emitted(truth[rid])
        assert emitted[rid]["extra_fields"] == {"paid_at": truth[rid]["paid_at"]}
    history = emitted_history_extras(second.records("receivable_history"))
    expected = expected_history_extras(list(truth.values()))
    assert history.items() <= expected.items()
    assert {key[0] for key, (entry, _) in history.items() if entry} == set(ids)
    assert {key[0] for key, (_, change) in history.items() if change} == set(ids[:6])
    assert len(warnings_for(second, "entry", "changed_by")) == 1


def select_all(catalog: dict) -> dict:
    """What Meltano's `select: [receivables.*, receivable_history.*]` writes."""
    catalog = copy.deepcopy(catalog)
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            meta["metadata"]["selected"] = True
    return catalog


def test_the_readme_stream_map_gives_typed_columns(evolved):
    config = yaml.safe_load(readme_block("When the API changes", "yaml", "stream_maps"))["config"]
    run = run_tap(tap_config(evolved, **config))
    (schema,) = run.schemas("receivables")
    properties = schema["schema"]["properties"]
    assert properties["payment_reference"]["type"] == ["string", "null"]
    assert properties["days_late"]["type"] == ["integer", "null"]
    truth = {r["id"]: r for r in evolved.truth()}
    validator = jsonschema.Draft202012Validator(schema["schema"], format_checker=FORMATS)
    for record in run.records("receivables"):
        validator.validate(record)
        expected = truth[record["id"]]
        assert record["payment_reference"] == expected.get("payment_reference")
        assert record["days_late"] == expected.get("days_late")
    assert sum(r["days_late"] is not None for r in run.records("receivables")) > 50


def test_with_flattening_the_catch_alls_stay_whole(evolved):
    run = run_tap(tap_config(evolved, flattening_enabled=True, flattening_max_depth=3))
    assert_records_validate(run)
    truth = {r["id"]: r for r in evolved.truth()}
    for stream, names in CATCH_ALLS.items():
        (schema,) = run.schemas(stream)
        for name in names:
            assert schema["schema"]["properties"][name]["type"] == ["string", "null"]
        assert not [k for r in run.records(stream) for k in r if "extra_fields__" in k]
    for record in run.records("receivables"):
        expected = as_emitted(truth[record["id"]]).get("extra_fields")
        assert (json.loads(record["extra_fields"]) if "extra_fields" in record else None) == (
            expected
        )
