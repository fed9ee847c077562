"""No discovery run of the tap when nothing changed, with select and metadata rules applied.

meltano.yml installs the tap as a package (`pip_url: .`), which Meltano 4.4.1 caches the
catalog of (an editable `-e .` it discovers again before every run). The tap runs through
a wrapper that logs its arguments, so each `--discover` is seen.
"""

from __future__ import annotations

import json
import typing as t

from e2e_helpers import clean_environment, edit_project, extractor, meltano, project_copy
from helpers import API_KEY

if t.TYPE_CHECKING:
    from pathlib import Path

    from kapwork_sandbox import Sandbox


def _records(folder: Path, stream: str) -> list[dict]:
    lines = (folder / f"{stream}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def test_second_run_uses_the_cached_catalog_with_rules_applied(
    e2e_sandbox: Sandbox, tmp_path: Path
) -> None:
    log = tmp_path / "tap-args.log"
    project = project_copy(
        tmp_path / "project", "extractors/tap-kapwork", "loaders/target-jsonl", args_log=log
    )

    def rules(select: list[str], metadata: dict) -> None:
        def change(content: dict) -> None:
            extractor(content, "tap-kapwork").update(select=select, metadata=metadata)

        edit_project(project, change)

    # `currency` deselected by a select rule, `po_number` by a metadata rule.
    rules(
        ["receivables.*", "!receivables.currency", "receivable_history.*"],
        {"receivables": {"po_number": {"selected": False}}},
    )
    env = {
        **clean_environment(),
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_AUTO_INSTALL": "false",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_KAPWORK_API_URL": e2e_sandbox.url,
        "TAP_KAPWORK_API_KEY": API_KEY,
    }

    def run(name: str) -> tuple[list[str], list[dict]]:
        """The tap's starts during one `meltano run`, and the receivables loaded."""
        output = tmp_path / name
        output.mkdir()
        before = log.read_text().splitlines() if log.exists() else []
        meltano(
            "run",
            "tap-kapwork",
            "target-jsonl",
            env={**env, "TARGET_JSONL_DESTINATION_PATH": str(output)},
            cwd=project,
        )
        return log.read_text().splitlines()[len(before) :], _records(output, "receivables")

    starts, records = run("first")
    assert [s for s in starts if "--discover" in s], starts  # nothing cached yet
    assert records
    assert not [r for r in records if "currency" in r or "po_number" in r]

    e2e_sandbox.mutate(5)
    starts, records = run("second")
    assert len(starts) == 1, starts
    assert "--discover" not in starts[0]
    assert "--catalog" in starts[0]
    assert records
    assert not [r for r in records if "currency" in r or "po_number" in r]
    assert all("status" in r for r in records)

    # A changed select rule applies to the cached catalog, without a discovery run.
    rules(
        ["receivables.*", "!receivables.currency", "!receivables.status", "receivable_history.*"],
        {"receivables": {"po_number": {"selected": False}}},
    )
    e2e_sandbox.mutate(5)
    starts, records = run("third")
    assert len(starts) == 1, starts
    assert "--discover" not in starts[0]
    assert records
    assert not [r for r in records if {"currency", "po_number", "status"} & set(r)]

    # A changed metadata rule is part of Meltano's cache key: discovered again, applied.
    rules(["receivables.*", "receivable_history.*"], {})
    e2e_sandbox.mutate(5)
    starts, records = run("fourth")
    assert [s for s in starts if "--discover" in s], starts
    assert records
    assert all("po_number" in r and "currency" in r for r in records)
