"""The README's typed stream map, run as written into a loader that validates every record
(target-jsonl 0.1.4): the values arrive, and an untyped expression fails as the README says."""

from __future__ import annotations

import json
import subprocess
import typing as t

import pytest
import yaml
from e2e_helpers import ROOT, loader
from helpers import API_KEY, run_tap, tap_config

from kapwork_sandbox import Sandbox

if t.TYPE_CHECKING:
    from pathlib import Path

UNTYPED = "amount_cents / 100"


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def readme_stream_maps() -> dict:
    """The `stream_maps` of the README's "Stream maps" YAML block."""
    section = readme_section("Stream maps")
    (block,) = [
        part.split("```", 1)[0] for part in section.split("```yaml\n")[1:] if "stream_maps:" in part
    ]
    (extractor,) = yaml.safe_load(block)["plugins"]["extractors"]
    assert extractor["name"] == "tap-kapwork"
    return extractor["config"]["stream_maps"]


def into_target_jsonl(
    sandbox: Sandbox, maps: dict, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    """tap-kapwork with `maps` | target-jsonl: the loader's process, the receivables SCHEMA
    the tap sent, and the loader's output folder."""
    run = run_tap(tap_config(sandbox, stream_maps=maps))
    (schema,) = run.schemas("receivables")
    output = tmp_path / "output"
    config = tmp_path / "target-jsonl.json"
    config.write_text(json.dumps({"destination_path": str(output), "do_timestamp_file": False}))
    proc = subprocess.run(
        [loader("target-jsonl"), "--config", str(config)],
        input=run.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc, schema["schema"], output


@pytest.fixture(scope="module")
def sandbox() -> t.Iterator[Sandbox]:
    with Sandbox(receivables=300, seed=43, api_key=API_KEY, profile="edge") as sandbox:
        yield sandbox


def test_the_readme_typed_map_loads_into_a_validating_loader(sandbox, tmp_path):
    maps = readme_stream_maps()
    expressions = maps["receivables"].values()
    assert any(e.startswith("float(") for e in expressions)
    assert any(e.startswith("str(") for e in expressions)
    proc, schema, output = into_target_jsonl(sandbox, maps, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    truth = {r["id"]: r for r in sandbox.truth()}

    assert schema["properties"]["amount"]["type"] == ["number", "null"]
    assert schema["properties"]["receivable_month"]["type"] == ["string", "null"]
    lines = (output / "receivables.jsonl").read_text().splitlines()
    loaded = {r["id"]: r for r in map(json.loads, lines)}
    assert set(loaded) == set(truth)
    for rid, record in loaded.items():
        expected = truth[rid]
        assert record["amount"] == expected["amount_cents"] / 100
        assert isinstance(record["amount"], float)
        assert record["receivable_month"] == expected["receivable_date"][:7]
        assert record["amount_cents"] == expected["amount_cents"]  # still there, exact


def test_an_untyped_expression_is_declared_a_string_and_fails_validation(sandbox, tmp_path):
    assert f"`{UNTYPED}` is declared a string" in readme_section("Stream maps")
    proc, schema, _ = into_target_jsonl(sandbox, {"receivables": {"amount": UNTYPED}}, tmp_path)
    assert schema["properties"]["amount"]["type"] == ["string", "null"]
    assert proc.returncode != 0
    assert "ValidationError" in proc.stderr
    assert "is not of type 'string'" in proc.stderr
