"""Write the Meltano Hub definition of the extractor from `tap-kapwork --about`.

python scripts/hub_definition.py          (or: make hub)   rewrites the file
python scripts/hub_definition.py --check  exits 1 if the file is out of step

The file follows the Hub's layout (`_data/meltano/extractors/<name>/<variant>.yml` in the
Hub's repository): settings, capabilities and the required group come from `--about`,
repo and pip_url from the package's project URLs, the rest is fixed below. Adding a
setting or a capability to the tap is one `make hub` away.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import typing as t
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANT = "kapwork"
HUB_FILE = ROOT / "hub" / "extractors" / "tap-kapwork" / f"{VARIANT}.yml"
FIXED = {
    "name": "tap-kapwork",
    "namespace": "tap_kapwork",
    "variant": VARIANT,
    "label": "Kapwork",
    "description": "Receivables and their change history from the Kapwork Partner API",
    "domain_url": "https://kapwork.com",
    "executable": "tap-kapwork",
    "keywords": ["api", "finance", "meltano_sdk"],
    "maintenance_status": "active",
    "select": ["receivables.*", "receivable_history.*"],
}


def meltano_kind(schema: dict[str, t.Any]) -> str:
    """The Meltano setting kind for a JSON schema from `--about`.

    Meltano has no `number`: a fractional number is a `decimal`; a date-time string is a
    `date_iso8601`; a secret is a `string` marked `sensitive` (see `sensitive`).
    """
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    types = [name for name in types if name != "null"]
    if "string" in types:
        return "date_iso8601" if schema.get("format") in {"date-time", "date"} else "string"
    for json_type, kind in (
        ("integer", "integer"),
        ("number", "decimal"),
        ("boolean", "boolean"),
        ("array", "array"),
        ("object", "object"),
    ):
        if json_type in types:
            return kind
    return "string"


def sensitive(schema: dict[str, t.Any]) -> bool:
    return bool(schema.get("secret") or schema.get("writeOnly"))


def about() -> dict[str, t.Any]:
    tap = Path(sys.executable).with_name("tap-kapwork")
    out = subprocess.run(
        [str(tap), "--about", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    return t.cast("dict[str, t.Any]", json.loads(out))


def project_urls() -> dict[str, str]:
    entries = importlib.metadata.metadata("tap-kapwork").get_all("Project-URL") or []
    return dict(entry.split(", ", 1) for entry in entries)


def definition(info: dict[str, t.Any], urls: dict[str, str]) -> dict[str, t.Any]:
    properties = info["settings"]["properties"]
    settings = []
    for name, schema in properties.items():
        setting: dict[str, t.Any] = {
            "name": name,
            "label": schema.get("title") or name.replace("_", " ").capitalize(),
            "kind": meltano_kind(schema),
            "description": schema.get("description", ""),
        }
        if sensitive(schema):
            setting["sensitive"] = True
        if schema.get("default") is not None:
            setting["value"] = schema["default"]
        settings.append(setting)
    repo = urls["Repository"]
    return {
        **FIXED,
        "repo": repo,
        "docs": urls.get("Documentation", repo),
        "pip_url": f"git+{repo}.git",
        "capabilities": sorted(info["capabilities"]),
        "settings_group_validation": [sorted(info["settings"].get("required", []))],
        "settings": sorted(settings, key=lambda s: s["name"]),
    }


def render(data: dict[str, t.Any]) -> str:
    # Sorted keys and settings, as in the Hub's own files.
    return yaml.safe_dump(data, sort_keys=True, allow_unicode=True, width=88)


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render(definition(about(), project_urls()))
    relative = HUB_FILE.relative_to(ROOT)
    if args.check:
        if not HUB_FILE.exists() or HUB_FILE.read_text() != text:
            print(f"{relative} is out of step with `tap-kapwork --about`: run `make hub`.")
            return 1
        return 0
    HUB_FILE.parent.mkdir(parents=True, exist_ok=True)
    HUB_FILE.write_text(text)
    print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
