"""output/report.html as a person sees it: opened in headless Chromium, every chart drawn.

The report is generated here (sandbox -> tap -> DuckDB -> dbt build -> scripts/report.py),
not taken from an earlier `make demo`. Chromium is Debian's (/usr/bin/chromium, installed by
.ci/run); playwright drives it and never downloads a browser. `python
tests/e2e/test_report.py output/report.html docs/report.png` takes the README's screenshot
the same way.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
import typing as t
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# Root on a closed network: no sandbox, no GPU, nothing that calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# What each chart draws once plotly has rendered it.
DRAWN = """() => [...document.querySelectorAll('.plotly-graph-div')].map(div => ({
    title: (div.querySelector('.gtitle') || {}).textContent || '',
    svgs: div.querySelectorAll('svg.main-svg').length,
    bars: div.querySelectorAll('g.point path').length,
    links: div.querySelectorAll('.sankey-link').length,
    width: div.getBoundingClientRect().width,
    height: div.getBoundingClientRect().height,
}))"""


def load_report_module() -> t.Any:
    spec = importlib.util.spec_from_file_location("report", ROOT / "scripts" / "report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["report"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def open_in_chromium(report: Path, screenshot: Path | None = None) -> tuple[list[dict], list[str]]:
    """(what each chart drew, console errors) after Chromium loaded the page from disk."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does).")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", lambda route: _local_only(route, errors))
            page.goto(report.resolve().as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function("document.querySelectorAll('svg.main-svg').length > 0")
            charts = page.evaluate(DRAWN)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return charts, errors


def _local_only(route: t.Any, errors: list[str]) -> None:
    """Let the page load only from disk: a request to the network is an error."""
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        errors.append(f"network request: {route.request.url}")
        route.abort()


def test_report_draws_every_chart_in_chromium(tmp_path):
    from e2e_helpers import loader, pipe
    from helpers import tap_config
    from test_models import dbt_build

    from kapwork_sandbox import Sandbox

    database = tmp_path / "warehouse.duckdb"
    config = tmp_path / "target-duckdb.json"
    config.write_text(json.dumps({"path": str(database), "default_target_schema": "kapwork"}))
    with Sandbox(receivables=200, seed=23, profile="realistic") as sandbox:
        pipe(tap_config(sandbox), loader("target-duckdb"), config)
    env = {"DBT_DUCKDB_PATH": str(database), "DBT_DUCKDB_SOURCE_SCHEMA": "kapwork"}
    dbt_build("duckdb", env, tmp_path, dt.datetime.now(dt.timezone.utc).date())

    report = load_report_module()
    answers = report.read(database)
    path = report.write(answers, tmp_path / "report.html")
    html = path.read_text()
    assert "<script src=" not in html, "plotly must be inlined: the report opens offline"

    charts, errors = open_in_chromium(path)
    assert errors == []
    assert [c["title"] for c in charts] == [
        "Open amount by aging bucket (days past due), per currency",
        "Days from detection to PAID, by debtor",
        "Status flow: every status change (from, left; to, right)",
    ]
    aging, days, flow = charts
    for chart in charts:
        assert chart["svgs"] > 0
        assert chart["width"] > 0
        assert chart["height"] > 0
    # one bar per (currency, bucket) with an open amount; two per debtor that paid; one
    # link per kind of status transition
    assert aging["bars"] == len(answers.aging)
    assert days["bars"] == 2 * sum(1 for d in answers.debtors if d[4] is not None)
    assert flow["links"] == len(answers.transitions)


if __name__ == "__main__":
    drawn, problems = open_in_chromium(Path(sys.argv[1]), Path(sys.argv[2]))
    print(drawn, problems)
