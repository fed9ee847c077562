"""The models on Snowflake SQL: dbt-snowflake on what target-snowflake wrote into fakesnow.

The tap's output goes through the pinned target-snowflake into fakesnow (test_snowflake.py's
runner), then dbt-snowflake, the one the `dbt-snowflake` utility installed, builds and
tests the models on the same databases (dbt_snowflake_runner.py: fakesnow in-process and
dbt's programmatic runner), and the contents are checked against the sandbox truth as
test_models.py checks DuckDB and PostgreSQL, before and after an incremental load.

fakesnow is not Snowflake: it runs on DuckDB and hands it any function it does not
translate. So the runner refuses every statement with a function Snowflake's SQL dialect
does not know (sqlglot's), a dbt warning fails the build, and no text value of a model
may still wear the JSON quotes a VARIANT keeps when cast whole on fakesnow.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import typing as t
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from e2e_helpers import ROOT, meltano, meltano_env, pipe
from helpers import API_KEY, tap_config
from test_models import MODELS, load_build_check, today
from test_snowflake import TARGET_CONFIG, emulated_target, query_loaded

from kapwork_sandbox import Sandbox

VENV = ROOT / ".meltano" / "utilities" / "dbt-snowflake" / "venv"
RUNNER = Path(__file__).with_name("dbt_snowflake_runner.py")
# The models go to a database of their own: the sources must name the loader's.
MODELS_DATABASE, MODELS_SCHEMA = "ANALYTICS", "KAPWORK_MODELS"
ISO_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?$")


def zone_on_another_day(now: dt.datetime) -> str:
    """A time zone whose date is not UTC's at `now` (Snowflake's default, when it is not)."""
    for zone in ("America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        if now.astimezone(ZoneInfo(zone)).date() != now.date():
            return zone
    raise AssertionError(f"no zone on another day at {now}")  # UTC-11 or +14 always is


class DbtOnFakesnow:
    """dbt-snowflake's commands on the emulated databases, then queries on the models."""

    def __init__(self, db_dir: Path, work: Path, zone: str) -> None:
        if not (VENV / "bin" / "dbt").exists():
            pytest.fail(f"{VENV} is missing: run `make meltano` (it runs `meltano install`).")
        self.db_dir, self.work, self.zone = db_dir, work, zone
        self.process: subprocess.Popen[str] | None = None
        self.functions: set[str] = set()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TARGET_SNOWFLAKE_")},
            "DBT_LOG_PATH": str(work / "dbt-logs"),
            # What Meltano sets from the utility's settings (meltano.yml).
            "DBT_SNOWFLAKE_ACCOUNT": TARGET_CONFIG["account"],
            "DBT_SNOWFLAKE_USER": TARGET_CONFIG["user"],
            "DBT_SNOWFLAKE_PASSWORD": TARGET_CONFIG["password"],
            "DBT_SNOWFLAKE_DATABASE": TARGET_CONFIG["database"],
            "DBT_SNOWFLAKE_SOURCE_SCHEMA": TARGET_CONFIG["default_target_schema"],
            "DBT_SNOWFLAKE_TARGET_DATABASE": MODELS_DATABASE,
            "DBT_SNOWFLAKE_TARGET_SCHEMA": MODELS_SCHEMA,
        }

    def run(self, *invocations: list[str]) -> list[dict[str, t.Any]]:
        """dbt's commands in one process; fails on an error, a warning or refused SQL."""
        self.close()
        common = [
            "--project-dir",
            str(ROOT / "transform"),
            "--profiles-dir",
            str(ROOT / "transform" / "profiles" / "snowflake"),
            "--target-path",
            str(self.work / "dbt-target-snowflake"),
        ]
        setup = {
            "invocations": [[*args, *common] for args in invocations],
            "attach": [TARGET_CONFIG["database"]],
            "session": {"database": MODELS_DATABASE, "schema": MODELS_SCHEMA},
            "timezone": self.zone,
        }
        stderr = (self.work / "runner.log").open("w")
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(RUNNER), str(self.db_dir), json.dumps(setup)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=self.env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        log = (self.work / "runner.log").read_text()
        assert line, f"dbt_snowflake_runner.py ended:\n{log[-5000:]}"
        answer = json.loads(line)
        self.functions.update(answer["functions"])
        assert not answer["refused"], answer["refused"]
        for args, result in zip(invocations, answer["invocations"], strict=True):
            assert result["success"], f"dbt {args[0]}: {result['exception']}\n{log[-5000:]}"
            assert not result["warnings"], result["warnings"]  # a warning fails too
        return t.cast(list, answer["invocations"])

    def build(self, as_of: dt.date, *also: list[str]) -> list[dict[str, t.Any]]:
        """`dbt build` as of a date, then `also` (other commands, with the same vars: a
        change of vars would make dbt parse the whole project again)."""
        vars_ = ["--vars", json.dumps({"as_of_date": as_of.isoformat()})]
        return self.run(["build", *vars_], *([*args, *vars_] for args in also))

    def query(self, sql: str) -> list[tuple]:
        assert self.process is not None, "query() after run()"
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(sql) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, (self.work / "runner.log").read_text()[-3000:]
        return [tuple(_value(v) for v in row) for row in json.loads(line)]

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=60)
            self.process = None


def _value(value: t.Any) -> t.Any:
    """Timestamps came back as text (JSON); the checks compare datetimes."""
    if isinstance(value, str) and ISO_TIMESTAMP.match(value):
        return dt.datetime.fromisoformat(value)
    return value


def quoted_values(query: t.Callable[[str], list[tuple]]) -> dict[str, list[str]]:
    """Text values of the models still in JSON quotes, per model.column."""
    columns = query(
        "select table_name, column_name from information_schema.columns "
        f"where table_schema = '{MODELS_SCHEMA}' and data_type = 'TEXT'"
    )
    assert columns, "no text columns: the query found no models"
    found = {}
    for table, column in columns:
        rows = query(
            f"select distinct {column} from {table} "
            f"where startswith({column}, '\"') and endswith({column}, '\"') limit 3"
        )
        if rows:
            found[f"{table}.{column}"] = [row[0] for row in rows]
    return found


@pytest.fixture
def realistic_sandbox() -> t.Iterator[Sandbox]:
    """The sandbox test_models.py builds the models on."""
    with Sandbox(receivables=300, seed=11, profile="realistic") as sandbox:
        yield sandbox


def test_models_on_snowflake_emulator(realistic_sandbox, tmp_path):
    target, target_config, db_dir = emulated_target(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    dbt = DbtOnFakesnow(db_dir, tmp_path, zone_on_another_day(now))
    as_of = today()

    shown: list[list] = []

    def load(state: dict | None) -> dict:
        dbt.close()  # the loader opens the database files next
        return pipe(tap_config(realistic_sandbox), target, target_config, state=state)

    def build() -> str:
        # The build date without --vars (as_of_date's default), in a session whose own
        # date is another day than UTC's.
        built, show = dbt.build(as_of, ["show", "--inline", "select {{ build_date() }} as d"])
        shown.extend(show["rows"])
        assert quoted_values(dbt.query) == {}
        return t.cast(str, built["summary"])

    try:
        counts = load_build_check(realistic_sandbox, load, build, dbt.query, as_of)
    finally:
        dbt.close()
    assert {row[0] for row in shown} == {today().isoformat()}, f"session time zone {dbt.zone}"
    print("Snowflake emulator model rows:", counts)
    print("Functions the guard checked:", ", ".join(sorted(dbt.functions)))
    assert set(counts) == set(MODELS)


def test_meltano_run_with_dbt_snowflake_build(tmp_path):
    """The README's `meltano run tap-kapwork target-snowflake dbt-snowflake:build`, on fakesnow.

    A project next to this one, with meltano.yml as it is but for the two executables
    (target-snowflake and dbt started under fakesnow) and the installed plugins: only the
    loader's variables are set, so dbt must find the tables through meltano.yml's aliases,
    the profile and the sources. The session's time zone is Snowflake's default.
    """
    readme = (ROOT / "README.md").read_text()
    for command in ("meltano run", "meltano --environment=prod run"):
        assert f"{command} tap-kapwork target-snowflake dbt-snowflake:build" in readme
    _, _, db_dir = emulated_target(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    for name in (".meltano", "transform"):
        (project / name).symlink_to(ROOT / name)
    dbt = tmp_path / "dbt"
    setup = json.dumps({"attach": [TARGET_CONFIG["database"]]})
    dbt.write_text(
        f'#!/bin/sh\nexec "{VENV / "bin" / "python"}" "{RUNNER}" "{db_dir}" \'{setup}\' "$@"\n'
    )
    dbt.chmod(0o755)
    text = (ROOT / "meltano.yml").read_text()
    for name, executable, wrapper in (
        ("target-snowflake", "target-snowflake", tmp_path / "target-snowflake"),
        ("dbt-snowflake", "dbt", dbt),
    ):
        head, _, rest = text.partition(f"- name: {name}\n")
        assert rest, name
        text = (
            head
            + f"- name: {name}\n"
            + rest.replace(f"executable: {executable}\n", f"executable: {wrapper}\n", 1)
        )
    (project / "meltano.yml").write_text(text)

    with Sandbox(receivables=120, seed=31, api_key=API_KEY, profile="realistic") as sandbox:
        # Only the loader's variables: none of the caller's TARGET_* or DBT_*.
        unset = {k: None for k in os.environ if k.startswith(("TARGET_", "DBT_"))}
        env = meltano_env(
            sandbox,
            tmp_path,
            **unset,
            TARGET_SNOWFLAKE_ACCOUNT=TARGET_CONFIG["account"],
            TARGET_SNOWFLAKE_USER=TARGET_CONFIG["user"],
            TARGET_SNOWFLAKE_PASSWORD=TARGET_CONFIG["password"],
            TARGET_SNOWFLAKE_DATABASE=TARGET_CONFIG["database"],
            DBT_TARGET_PATH=str(tmp_path / "dbt-target"),
            DBT_LOG_PATH=str(tmp_path / "dbt-logs"),
        )
        proc = meltano(
            "run", "tap-kapwork", "target-snowflake", "dbt-snowflake:build", env=env, cwd=project
        )
        truth = sandbox.truth()
    output = proc.stdout + proc.stderr
    assert "ERROR=0" in output
    assert "WARN=0" in output
    models = f"{TARGET_CONFIG['database']}.ANALYTICS.RECEIVABLES_CURRENT"  # target_schema
    [counts] = query_loaded(db_dir, f"select count(*), count(distinct currency) from {models}")
    assert counts == [[len(truth), len({r["currency"] for r in truth})]]
