"""Test support shared by tests/, benchmarks/ and scripts/, in one place.

- `free_port`: a free TCP port on 127.0.0.1.
- `SandboxProcess`: the `kapwork-sandbox` command in a process of its own.
- `ThrowawayPostgres`: a PostgreSQL cluster in a temporary folder, for one session.
- `run_tap`: `tap-kapwork` as a user runs it, its Singer messages parsed (`TapRun`).
- `expected_history_rows` / `expected_history_keys`: what the `receivable_history`
  stream must hold for a sandbox truth (`Sandbox.truth()`), computed apart from the tap.
- `digest` / `truth_digest`: one short hash of what a load holds, and of what it must hold
  (the sandbox answers the latter at `/_sandbox/digest`: a million receivables' truth is
  too large to send).
- `as_emitted` / `expected_history_extras`: where the fields the docs do not list
  (`Sandbox.add_fields`) must arrive: the catch-all columns.
- `meltano_project`: a copy of the Meltano project with its own `.meltano/run`, running
  the plugins `make meltano` installed.

No pytest here: benchmarks and scripts import it too, and it ships with the sandbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from kapwork_sandbox.data import parse_moment
from kapwork_sandbox.evolution import DOCUMENTED

# The commands of the running interpreter's environment.
TAP = str(Path(sys.executable).with_name("tap-kapwork"))
SANDBOX = str(Path(sys.executable).with_name("kapwork-sandbox"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when asked)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """`kapwork-sandbox --port <free port> *args` in a process of its own (so that its CPU
    is not the caller's), returned once it says it listens; `stop` ends it."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [SANDBOX, "--port", str(self.port), *args], stdout=subprocess.PIPE, text=True
        )
        self.banner = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if "listening" not in self.banner:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"kapwork-sandbox did not start: {self.banner!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a Meltano project of its own ---------------------------------------------------------


def meltano_project(repository: Path, destination: Path, plugins: t.Sequence[str] = ()) -> Path:
    """`destination`: the project in `repository` as a fresh clone has it (the files git
    tracks, plus new ones not ignored), so its `.meltano/run` (state file, cached catalog)
    and `.meltano/batches` are its own. Each of `plugins` ("extractors/tap-kapwork",
    "loaders/target-postgres", ...) runs from the virtualenv `make meltano` installed in
    `repository`, linked: run Meltano with MELTANO_AUTO_INSTALL=false. RuntimeError when
    git or a plugin is missing."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repository,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        raise RuntimeError(f"the project is copied with git: {listed.stderr.decode()}")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = repository / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    for plugin in plugins:
        venv = repository / ".meltano" / plugin / "venv"
        if not venv.exists():
            raise RuntimeError(f"{venv} is missing: run `make meltano`.")
        (destination / ".meltano" / plugin).mkdir(parents=True)
        (destination / ".meltano" / plugin / "venv").symlink_to(venv)
    return destination


# --- a throwaway PostgreSQL -------------------------------------------------------------


class PostgresError(RuntimeError):
    """The throwaway cluster could not be created or started; the message says why."""


def postgres_program(name: str) -> str:
    """`initdb`, `pg_ctl`, …: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    found = shutil.which(name) or (str(installed[-1]) if installed else None)
    if not found:
        raise PostgresError(
            f"PostgreSQL's `{name}` was not found (PATH or /usr/lib/postgresql/*/bin): "
            "install the PostgreSQL server package."
        )
    return found


class ThrowawayPostgres:
    """A PostgreSQL cluster on a free loopback port, trust auth for user `kapwork`,
    fsync off, its unix socket in its own temporary folder; `stop` removes it all.

    As root, the server runs as user `postgres` (PostgreSQL refuses to run as root).
    `options` are added to the server's command line (e.g. `-c synchronous_commit=off`).
    """

    USER = "kapwork"
    DATABASE = "postgres"

    def __init__(self, *, options: t.Sequence[str] = (), prefix: str = "kapwork-pg-") -> None:
        self.options = tuple(options)
        self.prefix = prefix
        self.port = 0
        self.workdir: Path | None = None
        self._run_as: list[str] = []
        self._pg_ctl = ""

    @property
    def data(self) -> Path:
        assert self.workdir is not None, "ThrowawayPostgres is not started"
        return self.workdir / "data"

    def start(self) -> ThrowawayPostgres:
        initdb, self._pg_ctl = postgres_program("initdb"), postgres_program("pg_ctl")
        self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix))
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.workdir, user="postgres")
        self.port = free_port()
        try:
            self._run(
                initdb,
                *("-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8"),
                "--no-sync",
            )
            options = " ".join(
                (
                    f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
                    *self.options,
                )
            )
            log = str(self.workdir / "log")
            self._run(self._pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        except PostgresError:
            self.stop()
            raise
        return self

    def _run(self, program: str, *args: str) -> None:
        proc = subprocess.run(
            [*self._run_as, program, *args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            log = self.workdir / "log" if self.workdir else None
            server_log = log.read_text() if log and log.exists() else ""
            raise PostgresError(
                f"PostgreSQL could not start ({Path(program).name} {args[0]}): "
                f"{proc.stderr}{server_log}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder; safe to call twice."""
        if self.workdir is None:
            return
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._run_as, self._pg_ctl, "-D", str(self.data), "-m", "fast", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    @property
    def settings(self) -> dict[str, t.Any]:
        """Connection settings, as the loaders name them."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.USER,
            "password": "",
            "database": self.DATABASE,
        }

    @property
    def conninfo(self) -> str:
        """A libpq connection string (psycopg.connect)."""
        return f"host=127.0.0.1 port={self.port} user={self.USER} dbname={self.DATABASE}"


# --- running the tap --------------------------------------------------------------------


@dataclass
class TapRun:
    """The outcome of one `tap-kapwork` process."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[dict] = field(default_factory=list)
    wall: float = 0.0  # seconds

    @classmethod
    def from_process(cls, proc: subprocess.CompletedProcess[str], wall: float = 0.0) -> TapRun:
        # Singer messages end at "\n" only: str.splitlines would also split inside a value
        # holding U+2028 (which JSON leaves unescaped).
        messages = [json.loads(line) for line in proc.stdout.split("\n") if line.strip()]
        return cls(proc.returncode, proc.stdout, proc.stderr, messages, wall)

    def records(self, stream: str) -> list[dict]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def schemas(self, stream: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream]

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def state(self) -> dict | None:
        return self.states[-1] if self.states else None

    @property
    def state_lines(self) -> list[str]:
        return [line for line in self.stdout.split("\n") if '"type":"STATE"' in line]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "| ERROR" in line]


def run_tap(
    config: dict,
    state: dict | None = None,
    *,
    catalog: dict | None = None,
    extra_args: t.Sequence[str] = (),
    timeout: float | None = None,
    check: type[BaseException] | None = None,
) -> TapRun:
    """`tap-kapwork --config … [--state …] [--catalog …]`, the files written to a
    temporary folder. `check`: the exception raised (with the end of stderr) when the
    tap exits != 0, e.g. AssertionError in tests, SystemExit in scripts."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [TAP, "--config", write_json(tmp, "config.json", config), *extra_args]
        if state is not None:
            args += ["--state", write_json(tmp, "state.json", state)]
        if catalog is not None:
            args += ["--catalog", write_json(tmp, "catalog.json", catalog)]
        started = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.perf_counter() - started
    if check is not None and proc.returncode != 0:
        raise check(f"tap-kapwork exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return TapRun.from_process(proc, wall)


def write_json(directory: str, name: str, content: dict) -> str:
    """`content` as JSON in `directory`/`name`; the file's path."""
    path = Path(directory) / name
    path.write_text(json.dumps(content))
    return str(path)


# --- truth -> expected history rows -----------------------------------------------------


def comparable(value: t.Any) -> t.Any:
    """A history value in a form a set can hold: objects and arrays as JSON, keys sorted."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def expected_history_rows(truth: list[dict]) -> set[tuple]:
    """(receivable_id, changed_at, field, from, to) for every change in the truth."""
    return {
        (
            rec["id"],
            entry["changed_at"],
            name,
            comparable(change.get("from")),
            comparable(change.get("to")),
        )
        for rec in truth
        for entry in rec.get("history") or []
        for name, change in entry["changes"].items()
    }


def emitted_history_rows(records: list[dict]) -> list[tuple]:
    """The same tuples from `receivable_history` RECORDs (a list: duplicates count)."""
    return [
        (
            r["receivable_id"],
            r["changed_at"],
            r["field"],
            comparable(r["from_value"]),
            comparable(r["to_value"]),
        )
        for r in records
    ]


def utc_text(value: t.Any) -> str:
    """An instant (ISO text or datetime, as a database returns it) as naive UTC text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds")


def digest(receivables: t.Iterable[tuple], history: t.Iterable[tuple] | None) -> str:
    """A hash of (id, updated_at) for every receivable and, for Singer loads, of
    (receivable_id, changed_at, field) for every history row, all instants in UTC."""
    sha = hashlib.sha1(usedforsecurity=False)
    for pair in sorted((rid, utc_text(at)) for rid, at in receivables):
        sha.update(repr(pair).encode())
    sha.update(b"|history|")
    for row in sorted((rid, utc_text(at), f) for rid, at, f in history or ()):
        sha.update(repr(row).encode())
    return sha.hexdigest()[:12]


def truth_digest(truth: t.Collection[dict]) -> dict[str, t.Any]:
    """What a Singer load of `truth` must hold: the digest of its rows (`rows`), of its
    receivables alone (`receivables`, for loads that land history in another shape) and
    its row count (`count`). One history row per changed field, as in
    `expected_history_rows`, without holding those rows' values."""
    history = [
        (rec["id"], entry["changed_at"], name)
        for rec in truth
        for entry in rec.get("history") or []
        for name in entry["changes"]
    ]
    receivables = [(rec["id"], rec["updated_at"]) for rec in truth]
    return {
        "rows": digest(receivables, history),
        "receivables": digest(receivables, None),
        "count": len(receivables) + len(history),
    }


def arrival(value: t.Any) -> t.Any:
    """A history value as the README says it arrives: strings, integers (integral numbers
    too), booleans and null as they are; anything else as JSON text, keys sorted."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (str, int)):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def change_hash(before: t.Any, after: t.Any) -> str:
    """The documented history key column, computed here independently of the tap: SHA-256
    of the compact JSON `[from_value, to_value]`, first 16 hex digits."""
    text = json.dumps([arrival(before), arrival(after)], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expected_history_keys(truth: list[dict]) -> set[tuple]:
    """(receivable_id, changed_at, field, change_hash): the history primary key, from truth."""
    return {
        (rec["id"], entry["changed_at"], name, change_hash(change.get("from"), change.get("to")))
        for rec in truth
        for entry in rec.get("history") or []
        for name, change in entry["changes"].items()
    }


def emitted_history_keys(records: list[dict]) -> list[tuple]:
    return [(r["receivable_id"], r["changed_at"], r["field"], r["change_hash"]) for r in records]


def updated_since(truth: list[dict], since: dt.datetime) -> set[str]:
    """Ids of receivables updated at or after `since`: what a look-back may re-emit."""
    return {r["id"] for r in truth if parse_moment(r["updated_at"]) >= since}


def changes_since(truth: list[dict], since: dt.datetime) -> set[tuple]:
    """Expected history rows changed at or after `since`."""
    return {row for row in expected_history_rows(truth) if parse_moment(row[1]) >= since}


# --- truth -> where undeclared fields arrive ----------------------------------------------


def as_emitted(receivable: dict) -> dict:
    """A truth receivable as a `receivables` RECORD: its documented fields (not `history`),
    and every key the docs do not list in `extra_fields`, as the API sent it."""
    documented = DOCUMENTED["receivable"]
    record = {k: v for k, v in receivable.items() if k in documented and k != "history"}
    extra = {k: v for k, v in receivable.items() if k not in documented}
    if extra:
        record["extra_fields"] = extra
    return record


def expected_history_extras(truth: list[dict]) -> dict[tuple, tuple]:
    """History key -> (entry_extra_fields, change_extra_fields), each None when the entry
    or the change has no key the docs do not list."""
    expected = {}
    for rec in truth:
        for entry in rec.get("history") or []:
            entry_extra = {k: v for k, v in entry.items() if k not in DOCUMENTED["entry"]}
            for name, change in entry["changes"].items():
                extra = {k: v for k, v in change.items() if k not in DOCUMENTED["change"]}
                digest = change_hash(change.get("from"), change.get("to"))
                expected[rec["id"], entry["changed_at"], name, digest] = (
                    entry_extra or None,
                    extra or None,
                )
    return expected


def emitted_history_extras(records: list[dict]) -> dict[tuple, tuple]:
    """The same mapping from `receivable_history` RECORDs."""
    return {
        (r["receivable_id"], r["changed_at"], r["field"], r["change_hash"]): (
            r.get("entry_extra_fields"),
            r.get("change_extra_fields"),
        )
        for r in records
    }
