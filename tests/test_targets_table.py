"""scripts/targets_table.py: the README's "Targets we test" table is what the tests measured."""

from __future__ import annotations

import json

from helpers import script

targets_table = script("targets_table")


def test_the_readme_table_is_written_from_docs_targets_json():
    findings = json.loads(targets_table.MEASURED.read_text())
    assert [f["loader"] for f in findings] == list(targets_table.ORDER)
    readme = targets_table.README.read_text()
    table = targets_table.render(findings)
    assert targets_table.rewrite(readme, table) == readme, "run `make targets-table`"
    assert len(table.splitlines()) == 2 + len(targets_table.ORDER)


def test_rewrite_replaces_only_the_section_between_the_markers():
    text = f"a\n{targets_table.START}\nold\n{targets_table.END}\nb\n"
    assert (
        targets_table.rewrite(text, "new")
        == f"a\n{targets_table.START}\nnew\n{targets_table.END}\nb\n"
    )
