"""Output: the lean record path steps aside for stream maps, flattening and deselection,
and buffered records always reach the target before the STATE that covers them."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from helpers import discover, run_tap, tap_config

from kapwork_sandbox.testing import TAP, emitted_history_rows, expected_history_rows, write_json


def empty_properties(schema: dict, where: str = "") -> list[str]:
    """Where `schema` has an empty `"properties": {}`, at any depth."""
    found = [where or "(root)"] if schema.get("properties") == {} else []
    for name, node in (schema.get("properties") or {}).items():
        found += empty_properties(node, f"{where}.{name}" if where else name)
    return found


@pytest.mark.parametrize("depth", [1, 3])
def test_flattening_expands_objects_in_records_and_schema(sandbox, depth):
    run = run_tap(tap_config(sandbox, flattening_enabled=True, flattening_max_depth=depth))
    truth = {r["id"]: r for r in sandbox.truth()}
    (schema,) = run.schemas("receivables")
    properties = schema["schema"]["properties"]
    assert {"vendor__id", "vendor__name", "debtor__id", "debtor__name"} <= set(properties)
    assert "vendor" not in properties
    # metadata stays one column: its JSON text (its keys are open-ended, per portal).
    assert properties["metadata"]["type"] == ["string", "null"]
    records = run.records("receivables")
    assert len(records) == len(truth)
    assert any(truth[r["id"]]["metadata"] for r in records)
    for record in records:
        expected = truth[record["id"]]
        assert "vendor" not in record
        assert record["vendor__name"] == expected["vendor"]["name"]
        assert record["debtor__id"] == expected["debtor"]["id"]
        assert record["amount_cents"] == expected["amount_cents"]
        assert json.loads(record["metadata"]) == expected["metadata"]
    assert set(emitted_history_rows(run.records("receivable_history"))) == expected_history_rows(
        list(truth.values())
    )
    for stream in ("receivables", "receivable_history"):
        (schema,) = run.schemas(stream)
        declared = set(schema["schema"]["properties"])
        assert {key for record in run.records(stream) for key in record} <= declared, stream


def test_no_schema_declares_empty_properties(sandbox):
    run = run_tap(tap_config(sandbox, page_size=10), extra_args=["--test=schema"])
    schemas = [m for m in run.messages if m["type"] == "SCHEMA"]
    assert {m["stream"] for m in schemas} == {"receivables", "receivable_history"}
    for message in schemas:
        assert empty_properties(message["schema"]) == [], message["stream"]
    for entry in discover(tap_config(sandbox))["streams"]:
        assert empty_properties(entry["schema"]) == [], entry["stream"]


def test_stream_maps_add_drop_and_filter(sandbox):
    maps = {
        "receivables": {"amount": "amount_cents / 100", "metadata": "__NULL__"},
        "receivable_history": {"__filter__": "field == 'status'"},
    }
    run = run_tap(tap_config(sandbox, stream_maps=maps))
    truth = {r["id"]: r for r in sandbox.truth()}
    records = run.records("receivables")
    assert len(records) == len(truth)
    for record in records:
        assert "metadata" not in record
        assert record["amount"] == truth[record["id"]]["amount_cents"] / 100
    (schema,) = run.schemas("receivables")
    assert "amount" in schema["schema"]["properties"]
    assert "metadata" not in schema["schema"]["properties"]
    history = run.records("receivable_history")
    assert history
    assert {row["field"] for row in history} == {"status"}
    expected = {row for row in expected_history_rows(list(truth.values())) if row[2] == "status"}
    assert set(emitted_history_rows(history)) == expected


def test_deselected_property_is_neither_asked_for_nor_emitted(sandbox):
    config = tap_config(sandbox)
    catalog = discover(config)
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] != "receivables":
            continue
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == ["properties", "metadata"]:
                meta["metadata"]["selected"] = False
    sandbox.clear_requests()
    run = run_tap(config, catalog=catalog)
    records = run.records("receivables")
    assert len(records) == 600
    assert all("metadata" not in record for record in records)
    for request in sandbox.requests:
        assert "metadata" not in request["params"].get("expand[]", [])


def test_every_record_precedes_the_state_that_covers_it(sandbox):
    run = run_tap(tap_config(sandbox, page_size=50))
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    kinds = [message["type"] for message in lines]
    assert kinds[-1] == "STATE"
    final_state_at = len(kinds) - 1
    records = [i for i, kind in enumerate(kinds) if kind == "RECORD"]
    assert len(records) == len(run.records("receivables")) + len(run.records("receivable_history"))
    assert max(records) < final_state_at
    # Every line is one whole message: buffering never splits or merges them.
    assert all(kind in ("SCHEMA", "RECORD", "STATE") for kind in kinds)


def _batch_config(root: Path, batch_size: int = 4000) -> dict:
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": root.as_uri()},
        "batch_size": batch_size,
    }


def _batch_records(message: dict) -> list[dict]:
    (url,) = message["manifest"]
    with gzip.open(Path(url.removeprefix("file://")), "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_batch_files_hold_exactly_the_records_and_precede_every_state(sandbox, tmp_path):
    by_record = run_tap(tap_config(sandbox, page_size=100))
    run = run_tap(tap_config(sandbox, page_size=100, batch_config=_batch_config(tmp_path)))
    kinds = [m["type"] for m in run.messages]
    assert "RECORD" not in kinds
    assert kinds[-1] == "STATE"
    batches = [m for m in run.messages if m["type"] == "BATCH"]
    assert {m["stream"] for m in batches} == {"receivables", "receivable_history"}
    for message in batches:
        assert message["encoding"] == {"format": "jsonl", "compression": "gzip"}
        assert 0 < len(_batch_records(message)) <= 4000
    history = [r for m in batches if m["stream"] == "receivable_history" for r in _batch_records(m)]
    assert len(history) > 4000, "the history stream needs more than one file here"
    for stream in ("receivables", "receivable_history"):
        in_files = [r for m in batches if m["stream"] == stream for r in _batch_records(m)]
        assert in_files == by_record.records(stream)  # same records, same order
    # A BATCH is written as soon as its file is closed, and every file is closed before
    # any STATE: no STATE can run ahead of the records it covers.
    assert max(i for i, kind in enumerate(kinds) if kind == "BATCH") < len(kinds) - 1
    assert len(list(tmp_path.rglob("*.json.gz"))) == len(batches)
    assert run.state is not None
    assert {k: v for k, v in run.state.items() if k != "batch_files"} == by_record.state


def test_batch_config_with_stream_maps_is_one_clear_error(sandbox, tmp_path):
    maps = {"receivables": {"metadata": "__NULL__"}}
    run = run_tap(
        tap_config(sandbox, stream_maps=maps, batch_config=_batch_config(tmp_path)), check=False
    )
    assert run.returncode != 0
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    (line,) = run.error_lines
    assert "batch_config cannot be combined with stream_maps or flattening_enabled" in line
    assert list(tmp_path.iterdir()) == []


def _run_folders(root: Path) -> dict[str, list[str]]:
    """Lineage folder -> its run folders, sorted."""
    return {lineage.name: sorted(r.name for r in lineage.iterdir()) for lineage in root.iterdir()}


def test_each_run_removes_the_batch_files_the_loader_has_committed(sandbox, tmp_path):
    """A run given the STATE of run n removes the folders of runs before n; n's own
    folder stays one run longer; a run whose STATE never came back (killed) goes once a
    later STATE has."""
    config = tap_config(sandbox, batch_config=_batch_config(tmp_path))
    killed_first = run_tap(config)  # its STATE never came back: the next run has none
    first = run_tap(config)
    assert first.state is not None
    assert killed_first.state is not None
    marker = first.state["batch_files"]
    assert killed_first.state["batch_files"]["lineage"] == marker["lineage"]
    ((lineage, runs),) = _run_folders(tmp_path).items()
    assert runs == sorted([killed_first.state["batch_files"]["run"], marker["run"]])
    assert lineage.endswith(marker["lineage"])

    second = run_tap(config, state=first.state)
    assert second.state is not None
    assert second.state["batch_files"]["lineage"] == marker["lineage"]
    # The killed first run was older than the run whose STATE came back: removed.
    assert _run_folders(tmp_path)[lineage] == [marker["run"], second.state["batch_files"]["run"]]

    # A run killed before its STATE reached Meltano: the next run gets the second's.
    killed = run_tap(config, state=second.state)
    assert killed.state is not None
    state = second.state
    for _ in range(3):
        run = run_tap(config, state=state)
        assert run.state is not None
        state = run.state
        assert len(_run_folders(tmp_path)[lineage]) <= 3
    runs = _run_folders(tmp_path)[lineage]
    assert killed.state["batch_files"]["run"] not in runs
    assert killed_first.state["batch_files"]["run"] not in runs
    assert len(runs) == 2  # the run that wrote the STATE, and the last one
    assert runs[-1] == state["batch_files"]["run"]
    assert "Removed the BATCH files of" in run.stderr


def test_two_pipelines_never_remove_each_others_batch_files(sandbox, tmp_path):
    """Two partitions (their own vendors) with one storage root, run after run."""
    vendors = sorted({r["vendor"]["id"] for r in sandbox.truth()})
    configs = [
        tap_config(sandbox, vendor_ids=part, batch_config=_batch_config(tmp_path))
        for part in (vendors[::2], vendors[1::2])
    ]
    states = [run_tap(config).state for config in configs]
    for _ in range(3):
        states = [run_tap(c, state=state).state for c, state in zip(configs, states, strict=True)]
    lineages = _run_folders(tmp_path)
    assert len(lineages) == 2
    for state in states:
        assert state is not None
        (runs,) = [
            r for name, r in lineages.items() if name.endswith(state["batch_files"]["lineage"])
        ]
        assert len(runs) == 2
        assert runs[-1] == state["batch_files"]["run"]


def test_a_batch_marker_the_tap_did_not_write_removes_nothing(sandbox, tmp_path):
    config = tap_config(sandbox, batch_config=_batch_config(tmp_path))
    first = run_tap(config)
    assert first.state is not None
    forged = {**first.state, "batch_files": {"lineage": "../..", "run": "x"}}
    run = run_tap(config, state=forged)
    assert 'The state\'s "batch_files" is not one this tap wrote' in run.stderr
    ((_, runs),) = _run_folders(tmp_path).items()
    assert runs[0] == first.state["batch_files"]["run"]  # nothing removed
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("reader", "args"),
    [
        (["head", "-c", "4096"], ()),  # a loader that fails after a few lines
        (["true"], ("--discover",)),  # gone before the first byte
    ],
    ids=["sync", "discover"],
)
def test_a_loader_that_stops_reading_ends_the_tap_in_one_line(sandbox, tmp_path, reader, args):
    config = write_json(str(tmp_path), "config.json", tap_config(sandbox))
    loader = subprocess.Popen(reader, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    if args:
        loader.wait()  # the pipe has no reader before the tap starts
    try:
        tap = subprocess.run(
            [TAP, "--config", config, *args],
            stdout=loader.stdin,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        assert loader.stdin is not None
        loader.stdin.close()
        loader.wait()
    assert tap.returncode != 0
    lines = tap.stderr.splitlines()
    assert "The loader stopped reading the tap's output (broken pipe)" in lines[-1]
    assert "look at the loader's own error above" in lines[-1]
    assert [line for line in lines if "| ERROR" in line] == lines[-1:]
    for noise in ("Traceback", "unhandled error", "Exception ignored", "BrokenPipeError"):
        assert noise not in tap.stderr
