"""The tap as Meltano sees it: --about, --discover, and the docs and meltano.yml in step."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from helpers import TAP, discover, tap_config

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
    assert "history" not in props
    history = streams["receivable_history"]
    assert history["key_properties"] == ["receivable_id", "changed_at", "field"]
    assert set(history["schema"]["properties"]) == {
        "receivable_id",
        "changed_at",
        "field",
        "from_value",
        "to_value",
    }
    assert sandbox.requests == [], "discovery must not call the API"
