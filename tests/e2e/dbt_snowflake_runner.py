"""dbt-snowflake against fakesnow, in-process, refusing SQL that Snowflake would refuse.

    PYTHON dbt_snowflake_runner.py DB_DIR SETUP_JSON
    PYTHON dbt_snowflake_runner.py DB_DIR SETUP_JSON DBT_ARG...   (as the `dbt` executable)

PYTHON is the interpreter of the dbt-snowflake virtualenv that `meltano install` made;
`make meltano` installs the pinned fakesnow next to it. fakesnow's patch mode replaces
`snowflake.connector.connect`, so dbt-snowflake runs as it would against Snowflake on the
databases target-snowflake wrote in DB_DIR (tests/e2e/snowflake_runner.py). SETUP_JSON:
`invocations` (dbt's arguments, one list per command, run in order), `attach` (databases
to open first: on Snowflake every database of the account is visible, fakesnow opens one
when a connection names it), `session` (database and schema the queries run in) and
`timezone` (the session time zone; Snowflake's default is America/Los_Angeles, fakesnow's
UTC).

fakesnow hands every function it does not translate to DuckDB, so DuckDB-only SQL such as
`json_extract_string(...)` would pass here and fail on Snowflake. The guard parses each
statement as fakesnow does (sqlglot, Snowflake dialect) and refuses, before it runs:
- a call to a function the Snowflake dialect does not know (sqlglot: `Anonymous`);
- an expression sqlglot cannot write in Snowflake SQL (its "unsupported" errors);
- a call by a name sqlglot knows from another dialect only: not one of the Snowflake
  parser's own names, and gone when sqlglot writes the statement back as Snowflake SQL
  (`string_agg(...)` becomes `LISTAGG(...)`).

The first stdout line is the result: per invocation {"success", "exception", "summary"
(dbt's "Done. PASS=..." line), "warnings", "rows" (of `dbt show`)}, and the functions the
guard saw and what it refused. Then it answers queries, one JSON string of SQL per line
on stdin, one JSON line of rows on stdout, until stdin closes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import typing as t

import fakesnow
import fakesnow.cursor
import snowflake.connector
from dbt.cli.main import dbtRunner
from sqlglot import exp
from sqlglot.dialects.snowflake import Snowflake
from sqlglot.errors import ErrorLevel, UnsupportedError
from sqlglot.parser import Parser
from sqlglot.tokens import TokenType

# Function names in Snowflake's own parser (sqlglot), beyond those every dialect inherits.
SNOWFLAKE_OWN = {
    name
    for table, base in (
        (Snowflake.Parser.FUNCTIONS, Parser.FUNCTIONS),
        (Snowflake.Parser.FUNCTION_PARSERS, Parser.FUNCTION_PARSERS),
    )
    for name, build in table.items()
    if build is not base.get(name)
}
# Documented Snowflake functions that sqlglot writes back as another one (IFNULL and NVL as
# COALESCE, EXTRACT as DATE_PART): add one here only after checking Snowflake's reference.
SNOWFLAKE_REWRITTEN = {"IFNULL", "NVL", "EXTRACT"}
NOT_NAMES = {TokenType.IDENTIFIER, TokenType.STRING, TokenType.NUMBER, TokenType.AND, TokenType.OR}
functions: set[str] = set()
refused: list[str] = []
_parse_one = fakesnow.cursor.parse_one


def _refuse(reason: str, sql: str) -> t.NoReturn:
    refused.append(reason)
    raise snowflake.connector.errors.ProgrammingError(
        msg=f"{reason} (refused by tests/e2e/dbt_snowflake_runner.py)\n{sql[:500]}",
        errno=9998,
        sqlstate="42601",
    )


def _calls(sql: str) -> set[str]:
    """Names written before a parenthesis: function calls (and table names, keywords)."""
    tokens = Snowflake().tokenize(sql)
    return {
        token.text.upper()
        for token, following in itertools.pairwise(tokens)
        if following.token_type == TokenType.L_PAREN
        and token.token_type not in NOT_NAMES
        and token.text.replace("_", "").isalnum()
    }


def guarded_parse_one(command: str) -> exp.Expr:
    """fakesnow's own parse of a statement, checked against the Snowflake dialect."""
    expression = _parse_one(command)
    for function in expression.find_all(exp.Anonymous):
        _refuse(f"function {function.name}() is not in Snowflake's SQL dialect", command)
    try:
        snowflake_sql = expression.sql(dialect="snowflake", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as error:
        _refuse(f"not expressible in Snowflake SQL: {error}", command)
    # A name sqlglot knows from another dialect (STRING_AGG, JSON_EXTRACT_SCALAR) parses,
    # and fakesnow runs its translation; Snowflake would not. Such a name is neither
    # Snowflake's own nor written back by the Snowflake generator.
    written = _calls(command)
    for name in written - _calls(snowflake_sql) - SNOWFLAKE_OWN - SNOWFLAKE_REWRITTEN:
        _refuse(
            f"function {name}() is another dialect's (Snowflake writes it differently)", command
        )
    functions.update(
        name for name in written if name in Snowflake.Parser.FUNCTIONS or name in SNOWFLAKE_OWN
    )
    return expression


def invoke(args: list[str]) -> dict[str, t.Any]:
    """One dbt command, in this process; its logs go to stderr."""
    events: dict[str, list[str]] = {"warnings": [], "summary": []}

    def on_event(event: t.Any) -> None:
        if event.info.level in ("warn", "error"):
            events["warnings"].append(f"{event.info.name}: {event.info.msg}")
        if event.info.name == "StatsLine":
            events["summary"].append(event.info.msg)

    with contextlib.redirect_stdout(sys.stderr):
        result = dbtRunner(callbacks=[on_event]).invoke(args)
    rows = []
    if args[0] == "show" and result.success:  # the rows `dbt show` selected
        rows = [list(row) for row in result.result.results[0].agate_table.rows]
    return {
        "success": result.success,
        "exception": str(result.exception) if result.exception else None,
        "summary": events["summary"][-1] if events["summary"] else None,
        "warnings": events["warnings"],
        "rows": rows,
    }


def main() -> None:
    db_dir, setup_json, *dbt_args = sys.argv[1:]
    setup = json.loads(setup_json)
    fakesnow.cursor.parse_one = guarded_parse_one  # what FakeSnowflakeCursor.execute calls
    with fakesnow.patch(db_path=db_dir):
        for database in setup["attach"]:
            snowflake.connector.connect(database=database)
        session = snowflake.connector.connect(**setup.get("session", {}))
        # fakesnow sets TimeZone on its one DuckDB instance to UTC; a Snowflake session's
        # default (parameter TIMEZONE) is America/Los_Angeles.
        duck = session._duck_conn
        duck.execute(f"SET GLOBAL TimeZone = '{setup.get('timezone', 'America/Los_Angeles')}'")
        if dbt_args:  # as the `dbt` executable: its output, and its exit code
            result = invoke(dbt_args)
            print(json.dumps({**result, "functions": sorted(functions), "refused": refused}))
            sys.exit(0 if result["success"] and not refused and not result["warnings"] else 1)
        results = [invoke(args) for args in setup["invocations"]]
        answer = {"invocations": results, "functions": sorted(functions), "refused": refused}
        print(json.dumps(answer, default=str), flush=True)
        cursor = session.cursor()
        for line in sys.stdin:
            cursor.execute(json.loads(line))
            print(json.dumps([list(row) for row in cursor.fetchall()], default=str), flush=True)


if __name__ == "__main__":
    main()
