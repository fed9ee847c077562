"""Benchmark: the whole pipeline, `meltano run tap-kapwork <loader>`, end to end.

Starts the sandbox (N receivables, optional latency) and a throwaway PostgreSQL, then
times, side by side in one run and on the same data:

- the tap alone (its output to a file: the reference for STATE),
- `meltano run tap-kapwork target-postgres` with the project's settings (meltano.yml),
  with the loader's own defaults, and with the tap's opt-in BATCH messages,
- `meltano run tap-kapwork target-duckdb` with the project's settings and the loader's
  own defaults,
- optionally dlt's rest_api source (benchmarks/dlt_kapwork.py in .venv-dlt, `make dlt`)
  into PostgreSQL and DuckDB, with its defaults and loader_file_format="jsonl".

For each it prints wall time, rows loaded (counted in the database), rows/s and CPU
seconds per process (tap, loader, Meltano itself, dlt, the sandbox, the PostgreSQL
server), and checks that every Singer configuration loaded exactly the sandbox's truth
(dlt lands history in another shape: its receivables are checked). Then it changes
`--changes` receivables and runs every configuration again, incrementally, from its own
state, and says where the seconds of a small run go.

Also the peak RSS of each process (tap, loader, Meltano, dlt, the sandbox) and, for
PostgreSQL, the size of the loaded tables. The sandbox's data is the realistic profile
(`--profile edge`: long histories, the stress case).

    .venv/bin/python benchmarks/pipeline.py                      # 20,000 and 100,000
    .venv/bin/python benchmarks/pipeline.py --receivables 20000 100000 --skip pg-defaults
    .venv/bin/python benchmarks/pipeline.py --receivables 1000000 --only tap pg-project \
        pg-batch --changes 1000                                  # a million
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psutil
import psycopg

from kapwork_sandbox.testing import (
    PostgresError,
    SandboxProcess,
    ThrowawayPostgres,
    digest,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
DLT_PYTHON = ROOT / ".venv-dlt" / "bin" / "python"
API_KEY = "bench-key-000000"

# name -> (kind, description); the order of the table
CONFIGS: dict[str, tuple[str, str]] = {
    "tap": ("tap", "tap alone -> file"),
    "pg-project": ("meltano-postgres", "meltano run -> target-postgres, project settings"),
    "pg-unsanitized": (
        "meltano-postgres",
        "meltano run -> target-postgres, project, NUL kept",
    ),
    "pg-batch": ("meltano-postgres", "meltano run -> target-postgres, + tap BATCH (gzip)"),
    "pg-defaults": ("meltano-postgres", "meltano run -> target-postgres, loader defaults"),
    "duckdb-project": ("meltano-duckdb", "meltano run -> target-duckdb (= loader defaults)"),
    "dlt-pg": ("dlt-postgres", "dlt rest_api -> postgres, dlt defaults"),
    "dlt-pg-csv": ("dlt-postgres", "dlt rest_api -> postgres, loader_file_format=csv"),
    "dlt-duckdb": ("dlt-duckdb", "dlt rest_api -> duckdb, dlt defaults"),
    "dlt-duckdb-jsonl": ("dlt-duckdb", "dlt rest_api -> duckdb, loader_file_format=jsonl"),
}
# Environment for each Meltano configuration, on top of meltano.yml's `dev` environment.
LOADER_DEFAULTS = {
    # meltanolabs-target-postgres 0.8.1's own defaults (its --about). For target-duckdb
    # 0.8.0 the project keeps the loader's defaults: batch_size_rows 100000 measured best.
    "pg-defaults": {
        "TARGET_POSTGRES_USE_COPY": "false",
        "TARGET_POSTGRES_VALIDATE_RECORDS": "true",
        "TARGET_POSTGRES_ADD_RECORD_METADATA": "true",
        "TARGET_POSTGRES_ACTIVATE_VERSION": "true",
    },
    # The project's settings but sanitize_null_text_characters off (the loader's default):
    # what replacing NUL in every string costs (README "Load into Postgres").
    "pg-unsanitized": {"TARGET_POSTGRES_SANITIZE_NULL_TEXT_CHARACTERS": "false"},
}
ROLES = ("tap", "loader", "meltano", "dlt", "sandbox", "postgres")
MB = 1024 * 1024


def peak_rss(process: psutil.Process) -> int:
    """The process's peak RSS so far (Linux's VmHWM), bytes; its RSS now elsewhere."""
    try:
        with Path(f"/proc/{process.pid}/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return process.memory_info().rss
    except (OSError, psutil.Error):
        return 0


@dataclass
class Result:
    name: str
    wall: float
    cpu: dict[str, float]
    rows: int = 0
    same: str = "-"
    # "label first-last seen (s after start)" -> CPU s, for each child process
    phases: dict[str, float] = field(default_factory=dict)
    # role -> the largest peak RSS of one of its processes (sampled every 50 ms), MB
    peak_mb: dict[str, float] = field(default_factory=dict)
    tables_mb: float = 0.0  # PostgreSQL: pg_total_relation_size of the loaded tables

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall if self.wall else 0.0


# --- the services ---------------------------------------------------------------------


class Sandbox(SandboxProcess):
    """`kapwork-sandbox` in its own process, its CPU measured."""

    def __init__(self, receivables: int, latency_ms: int, seed: int, profile: str) -> None:
        started = time.perf_counter()
        try:
            super().__init__(
                *("--receivables", str(receivables), "--seed", str(seed), "--api-key", API_KEY),
                *("--latency-ms", str(latency_ms), "--profile", profile),
            )
        except RuntimeError as error:
            raise SystemExit(str(error)) from None
        self.startup = time.perf_counter() - started
        self.process = psutil.Process(self.proc.pid)

    def control(self, path: str, body: dict | None = None) -> t.Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def rss(self) -> tuple[float, float]:
        """(RSS now, peak RSS since it started), MB."""
        return self.process.memory_info().rss / MB, peak_rss(self.process) / MB

    def close(self) -> None:
        self.stop()


class Postgres(ThrowawayPostgres):
    """The throwaway cluster the tests use too, its server's CPU measured; commits do not
    wait for the disk (`synchronous_commit=off`, on top of fsync off)."""

    def __init__(self) -> None:
        super().__init__(options=["-c synchronous_commit=off"], prefix="kapwork-bench-pg-")
        try:
            self.start()
        except PostgresError as error:
            raise SystemExit(str(error)) from None
        self.process = psutil.Process(self.pid)
        self.dsn = f"postgresql://kapwork:unused@127.0.0.1:{self.port}/postgres"  # trust auth

    def cpu(self) -> float:
        """The server's CPU so far: postmaster, live backends, and the exited ones."""
        times = self.process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.process.children():
            try:
                ct = child.cpu_times()
                total += ct.user + ct.system
            except psutil.NoSuchProcess:
                pass
        return total

    def close(self) -> None:
        self.stop()


# --- running and measuring ------------------------------------------------------------


def _role(process: psutil.Process) -> str:
    try:
        names = [Path(arg).name for arg in process.cmdline()[:2]]
    except psutil.Error:
        return "meltano"
    if "tap-kapwork" in names:
        return "tap"
    if any(name.startswith("target-") for name in names):
        return "loader"
    return "meltano"


def measure(
    name: str,
    root_role: str,
    args: list[str],
    *,
    env: dict[str, str],
    stdout: t.IO | int,
    log: Path,
    sandbox: Sandbox,
    postgres: Postgres,
) -> Result:
    """Run a process tree; CPU per role from psutil samples (every 50 ms) of the children
    and wait4() of the root (which includes every descendant it reaped)."""
    before = {"sandbox": sandbox.cpu(), "postgres": postgres.cpu()}
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=stdout, stderr=err)
    children: dict[int, tuple[str, float]] = {}
    timeline: dict[int, list] = {}  # pid -> [label, first seen, last seen]
    peaks = dict.fromkeys(ROLES, 0)
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        root = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter() - started
        try:
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        if root is not None:
            peaks[root_role] = max(peaks[root_role], peak_rss(root))
        for child in descendants:
            try:
                times = child.cpu_times()
                discover = "--discover" in child.cmdline()
            except psutil.NoSuchProcess:
                continue
            # Just after fork a child still looks like Meltano, and a zombie has no command
            # line: a role, once seen as tap or loader, sticks.
            role = _role(child)
            if role == "meltano" and child.pid in children:
                role = children[child.pid][0]
            if child.pid in timeline and timeline[child.pid][0] == "discovery":
                discover = True
            cpu = times.user + times.system + times.children_user + times.children_system
            children[child.pid] = (role, cpu)
            peaks[role] = max(peaks[role], peak_rss(child))
            label = "discovery" if discover else role
            entry = timeline.setdefault(child.pid, [label, now, now])
            entry[0], entry[2] = label, now
        time.sleep(0.05)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = log.read_text().splitlines()
        errors = [line for line in lines if "error" in line.lower()][:15] or lines[-30:]
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n" + "\n".join(errors))
    cpu = dict.fromkeys(ROLES, 0.0)
    for role, seconds in children.values():
        cpu[role] += seconds
    cpu[root_role] += usage.ru_utime + usage.ru_stime - sum(s for _, s in children.values())
    cpu["sandbox"] = sandbox.cpu() - before["sandbox"]
    cpu["postgres"] = postgres.cpu() - before["postgres"]
    phases = {
        f"{label} {first:.2f}-{last:.2f}": children[pid][1]
        for pid, (label, first, last) in sorted(timeline.items(), key=lambda item: item[1][1])
        if label != "meltano"
    }
    peak_mb = {role: peak / MB for role, peak in peaks.items() if peak}
    peak_mb["sandbox"] = sandbox.rss()[1]
    return Result(name=name, wall=wall, cpu=cpu, phases=phases, peak_mb=peak_mb)


# --- what was loaded ------------------------------------------------------------------


def tables_mb(postgres: Postgres, schema: str) -> float:
    """What the loaded tables take on disk: pg_total_relation_size (indexes, TOAST), MB."""
    with psycopg.connect(postgres.conninfo) as conn:
        row = conn.execute(
            "select coalesce(sum(pg_total_relation_size(quote_ident(schemaname) || '.' || "
            "quote_ident(tablename))), 0) from pg_tables where schemaname = %s",
            (schema,),
        ).fetchone()
    return (row[0] if row else 0) / MB


def count_postgres(postgres: Postgres, schema: str, *, dlt: bool) -> tuple[int, str]:
    history_table = "receivables__history" if dlt else "receivable_history"
    with psycopg.connect(postgres.conninfo) as conn:
        receivables = conn.execute(f"select id, updated_at from {schema}.receivables").fetchall()
        if dlt:
            rows = conn.execute(f"select count(*) from {schema}.{history_table}").fetchone()
            return len(receivables) + (rows[0] if rows else 0), digest(receivables, None)
        history = conn.execute(
            f"select receivable_id, changed_at, field from {schema}.{history_table}"
        ).fetchall()
    return len(receivables) + len(history), digest(receivables, history)


def count_duckdb(path: Path, schema: str, *, dlt: bool) -> tuple[int, str]:
    with duckdb.connect(str(path), read_only=True) as db:
        # As text: reading TIMESTAMPTZ values into Python would need pytz.
        db.execute("set TimeZone = 'UTC'")
        receivables = db.sql(f"select id, updated_at::varchar from {schema}.receivables").fetchall()
        if dlt:
            rows = db.sql(f"select count(*) from {schema}.receivables__history").fetchone()
            return len(receivables) + (rows[0] if rows else 0), digest(receivables, None)
        history = db.sql(
            f"select receivable_id, changed_at::varchar, field from {schema}.receivable_history"
        ).fetchall()
    return len(receivables) + len(history), digest(receivables, history)


# --- one size ---------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, size: int, postgres: Postgres, tmp: Path):
        self.args, self.size, self.postgres, self.tmp = args, size, postgres, tmp
        self.sandbox = Sandbox(size, args.latency_ms, args.seed, args.profile)
        self.tap_state: Path | None = None

    def env(self, name: str) -> dict[str, str]:
        kind = CONFIGS[name][0]
        workdir = self.tmp / name
        workdir.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "MELTANO_ENVIRONMENT": "dev",
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_KAPWORK_API_URL": self.sandbox.url,
            "TAP_KAPWORK_API_KEY": API_KEY,
        }
        if kind == "meltano-postgres":
            env.update(
                {
                    "TARGET_POSTGRES_HOST": "127.0.0.1",
                    "TARGET_POSTGRES_PORT": str(self.postgres.port),
                    "TARGET_POSTGRES_USER": "kapwork",
                    # trust auth: ignored, but the loader insists on a password
                    "TARGET_POSTGRES_PASSWORD": "unused",
                    "TARGET_POSTGRES_DATABASE": "postgres",
                    "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": self.schema(name),
                }
            )
        if kind == "meltano-duckdb":
            env["TARGET_DUCKDB_PATH"] = str(workdir / "warehouse.duckdb")
            env["TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA"] = "kapwork"
        if name == "pg-batch":
            root = (workdir / "batches").as_uri()
            env["TAP_KAPWORK_BATCH_CONFIG"] = json.dumps(
                {
                    "encoding": {"format": "jsonl", "compression": "gzip"},
                    "storage": {"root": root},
                    "batch_size": self.args.batch_size,
                }
            )
        env.update(LOADER_DEFAULTS.get(name, {}))
        return env

    def schema(self, name: str) -> str:
        return f"bench_{name.replace('-', '_')}_{self.size}"  # pg_* is reserved

    def run(self, name: str) -> Result:
        kind = CONFIGS[name][0]
        workdir = self.tmp / name
        workdir.mkdir(exist_ok=True)
        env = self.env(name)
        log = workdir / "log.txt"
        common = {"env": env, "log": log, "sandbox": self.sandbox, "postgres": self.postgres}
        if kind == "tap":
            config = workdir / "config.json"
            config.write_text(json.dumps({"api_key": API_KEY, "api_url": self.sandbox.url}))
            args = [str(BIN / "tap-kapwork"), "--config", str(config)]
            if self.tap_state:
                args += ["--state", str(self.tap_state)]
            output = workdir / "out.jsonl"
            with output.open("wb") as out:
                result = measure(name, "tap", args, stdout=out, **common)
            self.tap_state = workdir / "state.json"
            state = ""
            with output.open() as lines:  # line by line: gigabytes at a million receivables
                for line in lines:
                    if line.startswith('{"type":"RECORD"'):
                        result.rows += 1
                    elif '"STATE"' in line:
                        state = line
            self.tap_state.write_text(json.dumps(json.loads(state)["value"]))
            output.unlink()
            return result
        if kind.startswith("meltano"):
            loader = "target-postgres" if kind == "meltano-postgres" else "target-duckdb"
            args = [str(MELTANO), "run", "tap-kapwork", loader]
            result = measure(name, "meltano", args, stdout=subprocess.DEVNULL, **common)
            if kind == "meltano-postgres":
                result.rows, result.same = count_postgres(
                    self.postgres, self.schema(name), dlt=False
                )
                result.tables_mb = tables_mb(self.postgres, self.schema(name))
            else:
                result.rows, result.same = count_duckdb(
                    workdir / "warehouse.duckdb", "kapwork", dlt=False
                )
            return result
        # dlt
        destination = "postgres" if kind == "dlt-postgres" else "duckdb"
        args = [
            str(DLT_PYTHON),
            str(HERE / "dlt_kapwork.py"),
            *("--url", self.sandbox.url, "--api-key", API_KEY, "--destination", destination),
            *("--pipelines-dir", str(workdir / "pipelines"), "--dataset", self.schema(name)),
        ]
        args += ["--dsn", self.postgres.dsn] if destination == "postgres" else []
        args += ["--path", str(workdir / "dlt.duckdb")] if destination == "duckdb" else []
        if name.endswith("-jsonl"):
            args += ["--format", "jsonl"]
        if name.endswith("-csv"):
            args += ["--format", "csv"]
        result = measure(name, "dlt", args, stdout=subprocess.DEVNULL, **common)
        if destination == "postgres":
            result.rows, result.same = count_postgres(self.postgres, self.schema(name), dlt=True)
            result.tables_mb = tables_mb(self.postgres, self.schema(name))
        else:
            result.rows, result.same = count_duckdb(
                workdir / "dlt.duckdb", self.schema(name), dlt=True
            )
        return result

    def close(self) -> None:
        self.sandbox.close()


def chosen(args: argparse.Namespace) -> list[str]:
    names = [n for n in CONFIGS if n not in args.skip and (not args.only or n in args.only)]
    if not DLT_PYTHON.exists():
        print(f"dlt: {DLT_PYTHON} is missing (`make dlt` installs it); dlt runs skipped.\n")
        names = [n for n in names if not n.startswith("dlt")]
    return names


def report(title: str, results: list[Result], truth: dict[str, t.Any], loaded_rows: bool) -> bool:
    full_digest, receivables_digest, truth_rows = (
        truth["rows"],
        truth["receivables"],
        truth["count"],
    )
    print(title)
    columns = ("wall s", "rows", "rows/s", *(f"{r} CPU" for r in ROLES), "= truth")
    print(f"{'':52}" + "".join(f"{c:>11}" for c in columns))
    ok = True
    for r in results:
        if r.same == "-":
            same = "-"
        elif r.same == full_digest:
            same = "yes"
        elif r.same == receivables_digest:
            same = "yes (ids)"
        else:
            same, ok = "NO", False
        description = CONFIGS[r.name][1]
        print(
            f"{description:52}{r.wall:11.2f}{r.rows:11,}{r.rows_per_second:11,.0f}"
            + "".join(f"{r.cpu[role]:11.2f}" for role in ROLES)
            + f"{same:>11}"
        )
    if loaded_rows:
        print(f"{'sandbox truth: rows a Singer load must hold':52}{'':11}{truth_rows:11,}")
    print("Peak RSS, MB (of the largest process of each role), and the tables in PostgreSQL:")
    memory = ("tap", "loader", "meltano", "dlt", "sandbox")
    print(f"{'':52}" + "".join(f"{r:>11}" for r in memory) + f"{'tables MB':>11}")
    for r in results:
        tables = f"{r.tables_mb:11,.0f}" if r.tables_mb else f"{'-':>11}"
        print(
            f"{CONFIGS[r.name][1]:52}"
            + "".join(f"{r.peak_mb.get(role, 0):11,.0f}" for role in memory)
            + tables
        )
    return ok


def ratios(results: dict[str, Result]) -> None:
    def ratio(a: str, b: str, label: str, target: str) -> None:
        if a in results and b in results:
            print(f"  {label:58} {results[b].wall / results[a].wall:6.2f}x  ({target})")

    ratio(
        "pg-project", "pg-defaults", "postgres: project settings vs loader defaults", "target >= 5"
    )
    ratio(
        "pg-project", "dlt-pg", "postgres: project settings vs dlt defaults", "target >= 1, aim 2"
    )
    ratio("pg-project", "dlt-pg-csv", "postgres: project settings vs dlt csv", "target >= 1, aim 2")
    ratio("pg-batch", "dlt-pg", "postgres: BATCH vs dlt defaults", "")
    ratio("pg-project", "pg-batch", "postgres: BATCH vs project settings (RECORD)", "")
    ratio(
        "pg-unsanitized",
        "pg-project",
        "postgres: NUL replaced (project) vs kept (loader default)",
        "",
    )
    ratio("duckdb-project", "dlt-duckdb", "duckdb: project settings vs dlt defaults", "")
    ratio(
        "duckdb-project",
        "dlt-duckdb-jsonl",
        "duckdb: project vs dlt jsonl (its best)",
        "target >= 2",
    )
    ratio("tap", "pg-project", "postgres project settings: wall / tap alone", "")
    ratio("tap", "duckdb-project", "duckdb project settings: wall / tap alone", "")


def startup_costs() -> None:
    """Where the seconds of a small run go before any data moves."""

    def wall(args: list[str]) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(args, capture_output=True, check=True, cwd=ROOT)
            best = min(best, time.perf_counter() - started)
        return best

    python = str(BIN / "python")
    postgres = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin"
    duck = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin"
    rows = [
        ("python -c pass (interpreter)", [python, "-c", "pass"]),
        ("import singer_sdk", [python, "-c", "import singer_sdk"]),
        ("import tap_kapwork.tap (SDK + tap)", [python, "-c", "import tap_kapwork.tap"]),
        ("tap-kapwork --about", [str(BIN / "tap-kapwork"), "--about"]),
        ("target-postgres --about", [str(postgres / "target-postgres"), "--about"]),
        ("target-duckdb: import", [str(duck / "python"), "-c", "import target_duckdb"]),
        ("meltano --version", [str(MELTANO), "--version"]),
    ]
    print("Start-up costs (best of 3, wall s):")
    for label, args in rows:
        print(f"  {label:40} {wall(args):6.2f}")


def run_size(args: argparse.Namespace, size: int, postgres: Postgres) -> bool:
    print(
        f"Sandbox: {size:,} receivables ({args.profile} profile), {args.latency_ms} ms latency "
        f"per request. {os.cpu_count()} CPUs, shared with other work while measured: compare "
        "ratios."
    )
    names = chosen(args)
    with tempfile.TemporaryDirectory(prefix="kapwork-pipeline-") as tmp:
        bench = Bench(args, size, postgres, Path(tmp))
        now, peak = bench.sandbox.rss()
        print(
            f"The sandbox started in {bench.sandbox.startup:.1f} s; RSS {now:,.0f} MB "
            f"(peak {peak:,.0f} MB while it built the data)."
        )
        try:
            full = {}
            for name in names:
                print(f"  full: {CONFIGS[name][1].strip()} ...", flush=True)
                full[name] = bench.run(name)
            truth = bench.sandbox.control("/_sandbox/digest")
            print()
            ok = report(f"Full load, {size:,} receivables", list(full.values()), truth, True)
            print("Ratios of wall time (one run):")
            ratios(full)
            print()

            if args.changes == 0:
                return ok
            bench.sandbox.control("/_sandbox/mutate", {"count": args.changes, "seed": args.seed})
            incremental = {}
            for name in names:
                if name in args.skip_incremental:
                    continue
                print(f"  incremental: {CONFIGS[name][1].strip()} ...", flush=True)
                incremental[name] = bench.run(name)
            truth = bench.sandbox.control("/_sandbox/digest")
            print()
            title = f"Incremental after {args.changes} changed receivables (rows: whole tables)"
            ok = report(title, list(incremental.values()), truth, False) and ok
            for r in incremental.values():
                r.rows = 0
            print(
                "Where the seconds of an incremental run go: each child process, seen from-to "
                "(s after start), [its CPU s]"
            )
            for r in incremental.values():
                if r.phases:
                    phases = ", ".join(f"{k} [{v:.2f}]" for k, v in r.phases.items())
                    print(f"  {r.name:15} wall {r.wall:5.2f}: {phases}")
            print()
        finally:
            bench.close()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivables", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--changes", type=int, default=300, help="changed before the 2nd run (0: no 2nd run)"
    )
    parser.add_argument("--batch-size", type=int, default=100_000, help="BATCH file rows")
    parser.add_argument(
        "--profile",
        choices=("realistic", "edge"),
        default="realistic",
        help="the sandbox's data: realistic (what users have) or edge (long histories: stress)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=list(CONFIGS))
    parser.add_argument("--only", nargs="*", default=[], choices=list(CONFIGS), help="just these")
    parser.add_argument(
        "--skip-incremental", nargs="*", default=[], choices=list(CONFIGS), help="full run only"
    )
    args = parser.parse_args()
    if not MELTANO.exists():
        raise SystemExit(f"{MELTANO} is missing: run `make meltano` first.")
    postgres = Postgres()
    ok = True
    try:
        for size in args.receivables:
            ok = run_size(args, size, postgres) and ok
    finally:
        postgres.close()
    startup_costs()
    if not ok:
        raise SystemExit("Some configuration did not load exactly the sandbox's truth.")


if __name__ == "__main__":
    main()
