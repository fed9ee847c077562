"""The tap as Meltano sees it: --about, --discover, and the docs and meltano.yml in step."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import (
    API_KEY,
    TAP,
    assert_one_line_failure,
    assert_secret_absent,
    discover,
    run_tap,
    run_tap_cli,
    script,
    tap_config,
)

from kapwork_sandbox import Sandbox
from tap_kapwork.timestamps import parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "api_key": None,
    "api_url": "https://api.kapwork.com",
    "start_date": None,
    "page_size": 500,
    "history_limit": 100,
    "include_metadata": True,
    "vendor_ids": None,
    "debtor_ids": None,
    "statuses": None,
    "request_timeout": 60,
    "retry_max_tries": 8,
    "retry_max_wait": 300,
    "max_parallel_requests": 4,
    "allow_insecure_http": False,
    "progress_interval": 30,
}


def about(fmt: str) -> str:
    return subprocess.run(
        [TAP, "--about", "--format", fmt], capture_output=True, text=True, check=True
    ).stdout


def test_about_lists_the_settings_with_their_defaults():
    settings = json.loads(about("json"))["settings"]
    assert settings["required"] == ["api_key"]
    properties = settings["properties"]
    for name, default in SETTINGS.items():
        assert properties[name].get("default") == default, name
    assert properties["api_key"]["secret"] is True
    assert properties["page_size"]["minimum"] == 1
    assert properties["page_size"]["maximum"] == 500
    assert properties["start_date"]["format"] == "date-time"


CAPABILITIES = {
    "catalog",
    "state",
    "discover",
    "about",
    "stream-maps",
    "schema-flattening",
    "structured-logging",
    "batch",
}


def test_about_lists_real_capabilities():
    capabilities = json.loads(about("json"))["capabilities"]
    assert set(capabilities) == CAPABILITIES


def test_readme_settings_table_is_generated_from_about():
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in about("markdown").splitlines() if line.startswith("| ")]
    assert len(rows) > len(SETTINGS)
    missing = [row for row in rows if row not in readme]
    assert missing == []


def test_meltano_yml_declares_every_setting_with_the_same_default():
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (extractor,) = [e for e in project["plugins"]["extractors"] if e["name"] == "tap-kapwork"]
    declared = {s["name"]: s for s in extractor["settings"]}
    for name, default in SETTINGS.items():
        assert name in declared, name
        assert declared[name].get("value") == default, name
    assert declared["api_key"].get("sensitive") is True
    assert set(extractor["capabilities"]) == CAPABILITIES


def test_meltano_yml_declares_every_setting_of_about_with_its_kind():
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (extractor,) = [e for e in project["plugins"]["extractors"] if e["name"] == "tap-kapwork"]
    declared = {s["name"]: s for s in extractor["settings"]}
    properties = json.loads(about("json"))["settings"]["properties"]
    kind = script("hub_definition").meltano_kind
    assert set(declared) == set(properties)
    for name, schema in properties.items():
        # meltano.yml leaves `kind` out for strings (Meltano's default).
        assert declared[name].get("kind", "string") == kind(schema), name
        assert declared[name].get("sensitive", False) == bool(schema.get("secret")), name
    for plugins in project["plugins"].values():
        for plugin in plugins:
            kinds = {s["name"]: s.get("kind") for s in plugin.get("settings", [])}
            assert "password" not in kinds.values(), plugin["name"]  # deprecated: string+sensitive


def test_discover_describes_both_streams(sandbox):
    catalog = discover(tap_config(sandbox))
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(streams) == {"receivables", "receivable_history"}
    receivables = streams["receivables"]
    assert receivables["key_properties"] == ["id"]
    assert receivables["replication_key"] == "updated_at"
    props = receivables["schema"]["properties"]
    assert props["amount_cents"]["type"] == ["integer", "null"]
    assert props["due_date"] == {"format": "date", "type": ["string", "null"]}
    assert props["updated_at"]["format"] == "date-time"
    assert props["vendor"]["properties"].keys() == {"id", "name"}
    assert props["metadata"]["additionalProperties"] is True
    # Catch-alls of fields the API adds (tests/test_undeclared.py), declared like metadata.
    assert props["extra_fields"]["type"] == props["metadata"]["type"]
    assert props["extra_fields"]["additionalProperties"] is True
    assert "history" not in props
    history = streams["receivable_history"]
    assert history["key_properties"] == ["receivable_id", "changed_at", "field", "change_hash"]
    assert set(history["schema"]["properties"]) == {
        "receivable_id",
        "changed_at",
        "field",
        "change_hash",
        "from_value",
        "to_value",
        "entry_extra_fields",
        "change_extra_fields",
    }
    for name in ("entry_extra_fields", "change_extra_fields"):
        assert history["schema"]["properties"][name]["type"] == props["metadata"]["type"]
        assert history["schema"]["properties"][name]["additionalProperties"] is True
    assert sandbox.requests == [], "discovery must not call the API"


@pytest.fixture(scope="module")
def small():
    with Sandbox(receivables=40, seed=12, api_key=API_KEY) as sandbox:
        yield sandbox


def _bookmark(value) -> str:
    stream = {"replication_key": "updated_at", "replication_key_value": value}
    return json.dumps({"bookmarks": {"receivables": stream}})


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "is empty"),
        ("{bookmarks", "is not valid JSON (line 1 column 2)"),
        ("[]", "holds a JSON array"),
        ('{"bookmarks": null}', '"bookmarks" is a JSON null'),
        (_bookmark("last tuesday"), '"last tuesday" (a JSON string), not an ISO 8601 date-time'),
        (_bookmark(1767225600), "1767225600 (a JSON integer), not an ISO 8601 date-time"),
    ],
)
def test_a_state_the_tap_cannot_use_is_one_line(small, text, phrase):
    small.clear_requests()
    run = run_tap_cli(
        "--config",
        "{config.json}",
        "--state",
        "{state.json}",
        files={"config.json": json.dumps(tap_config(small)), "state.json": text},
    )
    line = assert_one_line_failure(run, "state", phrase)
    assert "start_date" in line  # what to do
    assert small.requests == []


@pytest.mark.parametrize(
    ("args", "files", "env", "phrase"),
    [
        (["--config", "{c.json}"], {"c.json": '{"api_key": '}, {}, "c.json is not valid JSON"),
        (["--config", "{c.json}"], {"c.json": "[1]"}, {}, "holds a JSON array"),
        (["--config", "{c.json}", "--discover"], {"c.json": "{,}"}, {}, "is not valid JSON"),
        (
            ["--config=ENV"],
            {},
            {"TAP_KAPWORK_API_KEY": API_KEY, "TAP_KAPWORK_PAGE_SIZE": "abc"},
            "TAP_KAPWORK_PAGE_SIZE='abc' is not a whole number (page_size)",
        ),
        (
            ["--config=ENV"],
            {},
            {"TAP_KAPWORK_API_KEY": API_KEY, "TAP_KAPWORK_REQUEST_TIMEOUT": "soon"},
            "TAP_KAPWORK_REQUEST_TIMEOUT='soon' is not a number",
        ),
        (
            ["--config", "{c.json}"],
            {"c.json": json.dumps({"api_key": API_KEY[:10] + "\n" + API_KEY[10:]})},
            {},
            "api_key has a space, line break or non-ASCII character inside it",
        ),
    ],
)
def test_config_the_tap_cannot_read_is_one_line(args, files, env, phrase):
    run = run_tap_cli(*args, files=files, env=env)
    assert_one_line_failure(run, phrase)
    assert_secret_absent(run, API_KEY[:10] + "\n" + API_KEY[10:])


def test_settings_from_the_environment_are_typed(small):
    env = {
        "TAP_KAPWORK_API_KEY": API_KEY,
        "TAP_KAPWORK_API_URL": small.url,
        "TAP_KAPWORK_PAGE_SIZE": "15",
        "TAP_KAPWORK_REQUEST_TIMEOUT": "30.5",  # a number: the SDK would pass "30.5" on
        "TAP_KAPWORK_INCLUDE_METADATA": "false",
        "TAP_KAPWORK_STATUSES": '["PAID","APPROVED"]',
    }
    small.clear_requests()
    run = run_tap_cli("--config=ENV", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    expected = {r["id"] for r in small.truth() if r["status"] in ("PAID", "APPROVED")}
    assert {r["id"] for r in run.records("receivables")} == expected
    lists = [r for r in small.requests if r["path"] == "/v1/receivables"]
    assert {r["params"]["limit"][0] for r in lists} == {"15"}
    assert all("metadata" not in r["params"].get("expand[]", []) for r in lists)


def test_a_bookmark_without_replication_key_is_used_with_a_warning(small):
    config = tap_config(small, lookback_seconds=0)
    first = run_tap(config)
    state = json.loads(json.dumps(first.state))
    mark = state["bookmarks"]["receivables"]["replication_key_value"]
    for stream in state["bookmarks"].values():
        del stream["replication_key"]
    small.clear_requests()
    second = run_tap(config, state=state)
    assert "has no replication_key; using" in second.stderr
    # Not a silent full reload: only what is at the (inclusive) bookmark comes again.
    again = second.records("receivables")
    assert len(again) < len(first.records("receivables")) // 10
    assert all(parse_timestamp(r["updated_at"]) >= parse_timestamp(mark) for r in again)
    assert all(r["params"]["verified_since"] != ["all"] for r in small.requests)


def test_test_mode_stops_at_its_record_limit_without_an_error(small):
    run = run_tap_cli(
        "--config", "{c.json}", "--test", files={"c.json": json.dumps(tap_config(small))}
    )
    assert run.returncode == 0
    assert run.error_lines == []
    assert "Traceback" not in run.stderr
    assert len(run.records("receivables")) == 1
