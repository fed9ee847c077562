"""The Meltano Hub definition (hub/extractors/tap-kapwork/kapwork.yml) agrees with --about."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import TAP, script

ROOT = Path(__file__).resolve().parents[1]
HUB_FILE = ROOT / "hub" / "extractors" / "tap-kapwork" / "kapwork.yml"
# Meltano's setting kinds (https://docs.meltano.com/reference/plugin-definition-syntax).
KINDS = {"string", "integer", "decimal", "boolean", "date_iso8601", "array", "object", "options"}


def about() -> dict:
    out = subprocess.run(
        [TAP, "--about", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_hub_definition_is_generated_from_about():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "hub_definition.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # "… run `make hub`."


def test_hub_definition_declares_every_setting_and_capability():
    hub = yaml.safe_load(HUB_FILE.read_text())
    info = about()
    kind = script("hub_definition").meltano_kind
    assert hub["name"] == info["name"] == "tap-kapwork"
    assert (hub["namespace"], hub["variant"], hub["executable"]) == (
        "tap_kapwork",
        "kapwork",
        "tap-kapwork",
    )
    assert "meltano_sdk" in hub["keywords"]
    assert hub["maintenance_status"] in {"active", "beta", "development", "inactive", "unknown"}
    assert hub["pip_url"] == f"git+{hub['repo']}.git"
    assert set(hub["capabilities"]) == set(info["capabilities"])
    assert hub["settings_group_validation"] == [info["settings"]["required"]]

    settings = {s["name"]: s for s in hub["settings"]}
    properties = info["settings"]["properties"]
    assert set(settings) == set(properties)
    for name, schema in properties.items():
        assert settings[name]["kind"] in KINDS, name
        assert settings[name]["kind"] == kind(schema), name
        assert settings[name].get("value") == schema.get("default"), name
        assert settings[name]["label"], name
    assert settings["api_key"] == {**settings["api_key"], "kind": "string", "sensitive": True}
    assert not [s for s in settings.values() if s["kind"] == "password"]
    assert settings["request_timeout"]["kind"] == "decimal"
    assert settings["start_date"]["kind"] == "date_iso8601"


def test_meltano_kind_maps_json_schema_types():
    kind = script("hub_definition").meltano_kind
    assert kind({"type": ["number", "null"]}) == "decimal"
    assert kind({"type": ["integer", "null"]}) == "integer"
    assert kind({"type": ["string"], "format": "date-time"}) == "date_iso8601"
    assert kind({"type": "string", "secret": True}) == "string"
    assert kind({"type": ["array", "null"], "items": {"type": "string"}}) == "array"
    assert kind({"type": ["object", "null"]}) == "object"
    assert kind({"type": ["boolean", "null"]}) == "boolean"
