"""`make demo`: sandbox API -> tap-kapwork -> DuckDB -> dbt models, through Meltano.

A full load with the models built (`meltano run tap-kapwork target-duckdb dbt-duckdb:build`),
then an incremental load and a rebuild; prints the answers and writes output/report.html.

Run by the Makefile after it has installed everything; safe to run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import duckdb
import report

from kapwork_sandbox.testing import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
DATABASE = ROOT / "output" / "warehouse.duckdb"
STATE_ID = "dev:tap-kapwork-to-target-duckdb"
RECEIVABLES = 3000


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def meltano(*args: str, env: dict[str, str], quiet: bool = False) -> None:
    """Run Meltano, echoing its progress lines (not its per-request metrics)."""
    proc = subprocess.Popen(
        [str(MELTANO), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if quiet or "METRIC" in line or "Selection metadata" in line:
            continue
        words = (
            "listing",
            "Loading",
            "completed",
            "rror",
            "state",
            "Done. PASS",
            "Finished running",
        )
        if any(word in line for word in words):
            print("    " + line.rstrip()[:180], flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"meltano {' '.join(args)} failed (exit {proc.returncode})")


def summary() -> int:
    with duckdb.connect(str(DATABASE), read_only=True) as db:
        counts = {
            table: db.sql(f"select count(*) from kapwork.{table}").fetchone()[0]  # noqa: S608
            for table in ("receivables", "receivable_history")
        }
        print()
        print("Rows in DuckDB (" + str(DATABASE.relative_to(ROOT)) + "):")
        for table, count in counts.items():
            print(f"  {table:<20} {count:>8,}")
        print()
        print("Receivables by status:")
        for status, count in db.sql(
            "select status, count(*) from kapwork.receivables group by status order by 2 desc"
        ).fetchall():
            print(f"  {status:<14} {count:>6,}")
        print()
        print("Latest status changes:")
        for rid, changed_at, old, new in db.sql(
            "select receivable_id, changed_at, from_value, to_value "
            "from kapwork.receivable_history where field = 'status' "
            "order by changed_at desc limit 8"
        ).fetchall():
            print(f"  {changed_at:%Y-%m-%d %H:%M:%S}  {rid}  {old} -> {new}")
    return min(counts.values())


def main() -> None:
    started = time.monotonic()
    say(f"Starting the Kapwork sandbox with {RECEIVABLES:,} receivables")
    sandbox = SandboxProcess("--receivables", str(RECEIVABLES), "--profile", "realistic")
    url = sandbox.url
    try:
        print("    " + sandbox.banner, flush=True)
        env = {**os.environ, "TAP_KAPWORK_API_URL": url, "MELTANO_ENVIRONMENT": "dev"}
        DATABASE.parent.mkdir(exist_ok=True)
        for stale in (DATABASE, DATABASE.with_suffix(".duckdb.wal")):
            stale.unlink(missing_ok=True)
        subprocess.run(
            [str(MELTANO), "state", "clear", "--force", STATE_ID],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )

        say("Run 1: meltano run tap-kapwork target-duckdb dbt-duckdb:build (full load, models)")
        meltano("run", "tap-kapwork", "target-duckdb", "dbt-duckdb:build", env=env)

        say("Changing 40 receivables and adding 10 in the sandbox")
        request = urllib.request.Request(  # noqa: S310 (loopback sandbox URL)
            f"{url}/_sandbox/mutate",
            data=json.dumps({"count": 40, "insert": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            json.load(response)

        say("Run 2: meltano run tap-kapwork target-duckdb (incremental, from Meltano's state)")
        meltano("run", "tap-kapwork", "target-duckdb", env=env)

        say("Rebuilding the models: meltano invoke dbt-duckdb:build")
        began = time.monotonic()
        meltano("invoke", "dbt-duckdb:build", env=env)
        dbt_seconds = time.monotonic() - began
        say(f"dbt build took {dbt_seconds:.1f} s (Meltano and dbt start-up included)")
    finally:
        sandbox.stop()

    smallest = summary()
    print()
    answers = report.read(DATABASE)
    report.print_answers(answers)
    print()
    print("Rows per model:")
    for model, count in answers.counts.items():
        print(f"  {model:<28} {count:>8,}")
    path = report.write(answers, ROOT / "output" / "report.html")
    print()
    say(f"Report with charts (opens offline): {path.relative_to(ROOT)}")
    say(f"Demo finished in {time.monotonic() - started:.0f} s")
    if smallest == 0:
        raise SystemExit("A table is empty: the load did not write rows.")


if __name__ == "__main__":
    main()
