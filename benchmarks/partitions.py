"""Benchmark: one partner split by vendor into N Meltano jobs run at once into PostgreSQL.

For each N (default 1, 2, 4) on the same sandbox (realistic profile by default) and one
throwaway PostgreSQL, in a copy of the project (README "Scaling out"): the vendors are
dealt into N partitions of about the same number of receivables, one extractor
(`inherit_from: tap-kapwork-batch`, its `vendor_ids`), job and schedule each; the N jobs
start together into a schema of their own (full load), then again after `--changes`
changed receivables (incremental), then one job is killed with SIGKILL mid-run and run
again. It prints wall time, rows loaded and rows/s, and checks after each step: the
union of the tables equals the sandbox's truth, no duplicate key, N distinct state IDs
each with its bookmark, no "database is locked" from Meltano's SQLite system database.

    .venv/bin/python benchmarks/partitions.py                 # 20,000 receivables, N = 1 2 4
    .venv/bin/python benchmarks/partitions.py --receivables 100000 --partitions 1 4
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml
from pipeline import count_postgres, truth_digest

from kapwork_sandbox.testing import (
    PostgresError,
    SandboxProcess,
    ThrowawayPostgres,
    meltano_project,
)

ROOT = Path(__file__).resolve().parents[1]
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
API_KEY = "bench-key-000000"


@dataclass
class Step:
    label: str
    wall: float
    rows: int
    checks: dict[str, bool]

    def line(self) -> str:
        rate = self.rows / self.wall if self.wall else 0.0
        checks = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in self.checks.items())
        return f"  {self.label:34}{self.wall:9.2f}{self.rows:11,}{rate:11,.0f}   {checks}"


def deal(truth: list[dict], parts: int) -> list[list[str]]:
    """Vendors dealt into `parts`, largest first (README "Scaling out", its SQL)."""
    counts = Counter(r["vendor"]["id"] for r in truth)
    ordered = sorted(counts, key=lambda v: (-counts[v], v))
    return [sorted(ordered[i::parts]) for i in range(parts)]


class Partitions:
    """N partition jobs in a copy of the project, into one schema."""

    def __init__(self, project: Path, sandbox: SandboxProcess, pg: ThrowawayPostgres, n: int):
        self.project, self.sandbox, self.pg, self.n = project, sandbox, pg, n
        self.schema = f"partitions_{n}"
        self.jobs = [f"kapwork-part-{n}-{i}" for i in range(n)]
        self.logs = project / f"logs-{n}"
        self.logs.mkdir()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))},
            "MELTANO_ENVIRONMENT": "dev",
            "MELTANO_AUTO_INSTALL": "false",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",  # a project copy is new to it
            "TAP_KAPWORK_API_URL": sandbox.url,
            "TAP_KAPWORK_API_KEY": API_KEY,
            "TARGET_POSTGRES_HOST": "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(pg.port),
            "TARGET_POSTGRES_USER": pg.USER,
            "TARGET_POSTGRES_PASSWORD": "unused",  # trust auth; the loader insists on one
            "TARGET_POSTGRES_DATABASE": pg.DATABASE,
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": self.schema,
        }

    def declare(self, groups: list[list[str]]) -> None:
        path = self.project / "meltano.yml"
        content = yaml.safe_load(path.read_text())
        for job, vendors in zip(self.jobs, groups, strict=True):
            extractor = f"tap-kapwork-{job.removeprefix('kapwork-')}"
            content["plugins"]["extractors"].append(
                {
                    "name": extractor,
                    "inherit_from": "tap-kapwork-batch",
                    "config": {"vendor_ids": vendors},
                }
            )
            content.setdefault("jobs", []).append(
                {"name": job, "tasks": [f"{extractor} target-postgres"]}
            )
            content.setdefault("schedules", []).append(
                {"name": f"{job}-nightly", "job": job, "interval": "0 3 * * *"}
            )
        path.write_text(yaml.safe_dump(content, sort_keys=False))

    def prepare(self) -> None:
        """What must exist before the jobs start at once (README "Scaling out"): the
        system database (two `meltano run` creating it fail: "table job already
        exists") and the schema and tables (two target-postgres creating one schema
        fail: DuplicateSchema). A run that reads nothing (start_date in 2100) makes them."""
        env = {**self.env, "TAP_KAPWORK_START_DATE": "2100-01-01T00:00:00Z"}
        subprocess.run(
            [str(MELTANO), "run", "tap-kapwork-batch", "target-postgres"],
            cwd=self.project,
            env=env,
            capture_output=True,
            check=True,
        )

    def start(self, job: str, *extra: str) -> subprocess.Popen:
        with (self.logs / f"{job}.log").open("a") as log:
            return subprocess.Popen(
                [str(MELTANO), "run", *extra, job],
                cwd=self.project,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run_all(self) -> float:
        started = time.perf_counter()
        procs = {job: self.start(job) for job in self.jobs}
        failed = [job for job, proc in procs.items() if proc.wait() != 0]
        wall = time.perf_counter() - started
        self.fail_on(failed)
        return wall

    def fail_on(self, failed: list[str]) -> None:
        if failed:
            tails = [f"{job}:\n" + self.log_tail(job) for job in failed]
            raise SystemExit(f"{', '.join(failed)} failed:\n" + "\n".join(tails))

    def log_tail(self, job: str) -> str:
        lines = (self.logs / f"{job}.log").read_text().splitlines()
        return "\n".join([line for line in lines if "error" in line.lower()][:10] or lines[-20:])

    def kill_and_rerun(self, after: float) -> float:
        """Start every job, SIGKILL the first one (Meltano, tap, loader) after `after`
        seconds, let the others finish, run the first again (--force: Meltano marks a
        killed job failed only after 5 minutes). Returns the rerun's wall time."""
        procs = {job: self.start(job) for job in self.jobs}
        time.sleep(after)
        first = procs.pop(self.jobs[0])
        if first.poll() is not None:
            print(f"  (the first job ended within {after:.1f} s: nothing was killed)")
        else:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        self.fail_on([job for job, proc in procs.items() if proc.wait() != 0])
        started = time.perf_counter()
        rerun = self.start(self.jobs[0], "--force")
        self.fail_on([self.jobs[0]] if rerun.wait() != 0 else [])
        return time.perf_counter() - started

    def checks(self, truth: tuple[str, str, int]) -> tuple[int, dict[str, bool]]:
        rows, same = count_postgres(self.pg, self.schema, dlt=False)  # type: ignore[arg-type]
        with psycopg.connect(self.pg.conninfo) as conn:
            duplicates = conn.execute(
                f"select (select count(*) - count(distinct id) from {self.schema}.receivables)"
                " + (select count(*) - count(distinct (receivable_id, changed_at, field,"
                f" change_hash)) from {self.schema}.receivable_history)"
            ).fetchone()
        listed = self.state("list").split()
        ids = [
            f"dev:tap-kapwork-{job.removeprefix('kapwork-')}-to-target-postgres"
            for job in self.jobs
        ]
        bookmarked = all(
            json.loads(self.state("get", state_id))["singer_state"]["bookmarks"] for state_id in ids
        )
        locked = any("database is locked" in log.read_text() for log in self.logs.glob("*.log"))
        return rows, {
            "= truth": same == truth[0],
            "no duplicate key": duplicates is not None and duplicates[0] == 0,
            f"{self.n} state IDs": set(ids) <= set(listed) and bookmarked,
            "no SQLite lock error": not locked,
        }

    def state(self, *args: str) -> str:
        """`meltano state <args>`."""
        return subprocess.run(
            [str(MELTANO), "state", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def control(sandbox: SandboxProcess, path: str, body: dict | None = None) -> t.Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        sandbox.url + path, data=data, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivables", type=int, default=20_000)
    parser.add_argument("--profile", choices=["realistic", "edge"], default="realistic")
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    if not MELTANO.exists():
        raise SystemExit(f"{MELTANO} is missing: run `make meltano` first.")

    sandbox = SandboxProcess(
        *("--receivables", str(args.receivables), "--seed", str(args.seed)),
        *("--api-key", API_KEY, "--profile", args.profile, "--latency-ms", str(args.latency_ms)),
    )
    pg = ThrowawayPostgres(options=["-c synchronous_commit=off"], prefix="kapwork-bench-pg-")
    try:
        pg.start()
    except PostgresError as error:
        sandbox.stop()
        raise SystemExit(str(error)) from None
    print(
        f"Sandbox: {args.receivables:,} receivables ({args.profile} profile), "
        f"{args.latency_ms} ms latency; {os.cpu_count()} CPUs, shared with other work "
        "while measured. Columns: wall s, rows in the tables, rows/s."
    )
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="kapwork-partitions-") as tmp:
            for n in args.partitions:
                project = meltano_project(
                    ROOT, Path(tmp) / f"n{n}", ("extractors/tap-kapwork", "loaders/target-postgres")
                )
                jobs = Partitions(project, sandbox, pg, n)
                # A system database of its own per N, in the project (the default place).
                jobs.env["MELTANO_DATABASE_URI"] = f"sqlite:///{project / 'meltano.db'}"
                truth_rows = control(sandbox, "/_sandbox/truth")["data"]
                jobs.declare(deal(truth_rows, n))
                jobs.prepare()
                print(f"N = {n}:")
                steps = []
                wall = jobs.run_all()
                rows, checks = jobs.checks(truth_digest(truth_rows))
                steps.append(Step("full load, all jobs at once", wall, rows, checks))
                print(steps[-1].line(), flush=True)
                control(sandbox, "/_sandbox/mutate", {"count": args.changes, "seed": n})
                wall = jobs.run_all()
                truth = truth_digest(control(sandbox, "/_sandbox/truth")["data"])
                rows, checks = jobs.checks(truth)
                steps.append(Step(f"incremental, {args.changes} changed", wall, rows, checks))
                print(steps[-1].line(), flush=True)
                control(sandbox, "/_sandbox/mutate", {"count": args.changes, "seed": 100 + n})
                wall = jobs.kill_and_rerun(after=steps[1].wall / 2)
                truth = truth_digest(control(sandbox, "/_sandbox/truth")["data"])
                rows, checks = jobs.checks(truth)
                steps.append(Step("1st job killed -9, rerun (its wall)", wall, rows, checks))
                print(steps[-1].line(), flush=True)
                ok = ok and all(all(s.checks.values()) for s in steps)
                print()
    finally:
        sandbox.stop()
        pg.stop()
    if not ok:
        raise SystemExit("A check failed (NO above).")


if __name__ == "__main__":
    sys.exit(main())
