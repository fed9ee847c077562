"""target-snowflake against fakesnow, a local Snowflake emulator on DuckDB.

    PYTHON snowflake_runner.py DB_DIR load --config target.json < singer-messages
    PYTHON snowflake_runner.py DB_DIR query '["select …", …]'   -> JSON: rows per statement

PYTHON is the interpreter of the target-snowflake virtualenv that `meltano install` made;
`make meltano` installs the pinned fakesnow next to it. fakesnow's patch mode replaces
`snowflake.connector.connect`, so the target, snowflake-sqlalchemy and the connector's
cursor API run as they would against Snowflake, and the SQL the target writes is
translated to DuckDB. Databases persist as files in DB_DIR between runs.

Everything target-snowflake 0.20.4 does runs as written: schema and table DDL, its type
mapping, its file format DDL, and its MERGE upsert with the `$1:col::TYPE` JSON casts and
the QUALIFY de-duplication. Only the user-stage steps, which fakesnow cannot emulate, are
replaced, each by the smallest equivalent:

- PUT of the batch files to `@~/target-snowflake/<sync id>`: the files' JSON lines go into
  a table STAGE_<sync id> (SEQ = position in the files, DATA = the line as VARIANT).
- The MERGE's read of the stage, `select <casts> from '@~/…'(file_format => …) QUALIFY …`:
  the same casts (`$1:` -> `DATA:`) read that table, SEQ8() (a row's position in the staged
  files) becomes SEQ, and the QUALIFY moves to a wrapping select: DuckDB cannot bind the
  select-list alias it names inside a MERGE source ("The combining JOIN type must be INNER
  or LEFT for a LATERAL reference"), which Snowflake can.
- REMOVE of the staged files drops that table; DROP FILE FORMAT is a no-op (fakesnow
  cannot parse it; CREATE FILE FORMAT runs).

NB: the SDK drains sinks on parallel threads, and fakesnow serves every cursor from one
DuckDB connection, which refuses concurrent calls: sinks drain one at a time here.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import typing as t
from pathlib import Path
from urllib.parse import urlparse

import fakesnow
import pyarrow as pa
import singer_sdk.target_base
import snowflake.connector
from sqlalchemy import text
from target_snowflake.connector import SnowflakeConnector

singer_sdk.target_base._MAX_PARALLELISM = 1  # see NB above
# tests/e2e/test_snowflake.py configures the target with these.
DATABASE, SCHEMA = "RAW", "KAPWORK"
_merge_statement = SnowflakeConnector._get_merge_from_stage_statement


def _stage_table(sync_id: str) -> str:
    name = re.sub(r"\W", "_", sync_id)
    return f"{DATABASE}.{SCHEMA}.STAGE_{name}".upper()


def put_batches_to_stage(self: SnowflakeConnector, sync_id: str, files: t.Sequence[str]) -> None:
    lines: list[str] = []
    for uri in files:
        path = Path(urlparse(uri).path)
        with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as batch:
            lines += [line for line in batch if line.strip()]
    staged = pa.table({"SEQ": list(range(len(lines))), "DATA": lines})
    with self._connect() as conn:
        duck = conn.connection.dbapi_connection._duck_conn.cursor()  # fakesnow's DuckDB
        duck.register("staged_lines", staged)
        duck.execute(
            f"create table {_stage_table(sync_id)} as "
            "select SEQ, DATA::JSON as DATA from staged_lines"
        )
        duck.unregister("staged_lines")


def merge_from_stage_statement(
    self: SnowflakeConnector,
    full_table_name: t.Any,
    schema: dict,
    sync_id: str,
    file_format: str,
    key_properties: t.Iterable[str],
) -> tuple[t.Any, dict]:
    statement, kwargs = _merge_statement(
        self, full_table_name, schema, sync_id, file_format, key_properties
    )
    sql = statement.text
    stage = re.escape(f"'@~/target-snowflake/{sync_id}'(file_format => {file_format})")
    found = re.search(rf"using \(select (.*?) from {stage} (QUALIFY .*? = 1)\) s on ", sql)
    if not found:
        sys.exit(f"snowflake_runner: target-snowflake's MERGE changed shape:\n{sql}")
    casts = found[1].replace("$1:", "DATA:")
    dedup = found[2].replace("SEQ8()", "_STAGE_SEQ")
    source = (
        f"using (select * from (select {casts}, SEQ as _STAGE_SEQ "
        f"from {_stage_table(sync_id)}) {dedup}) s on "
    )
    return text(sql[: found.start()] + source + sql[found.end() :]), kwargs


def remove_statement(self: SnowflakeConnector, sync_id: str) -> tuple[t.Any, dict]:
    return text(f"drop table if exists {_stage_table(sync_id)}"), {}


SnowflakeConnector.put_batches_to_stage = put_batches_to_stage
SnowflakeConnector._get_merge_from_stage_statement = merge_from_stage_statement
SnowflakeConnector._get_stage_files_remove_statement = remove_statement


def main() -> None:
    db_dir, command, *rest = sys.argv[1:]
    with fakesnow.patch(db_path=db_dir, nop_regexes=[r"^drop file format"]):
        # NB: fakesnow's MERGE needs a current schema, which a Snowflake session has
        # from the user's defaults: sessions start in the target schema.
        fake_connect = snowflake.connector.connect.side_effect
        snowflake.connector.connect.side_effect = lambda *args, **kwargs: fake_connect(
            *args, **{"schema": SCHEMA, **kwargs}
        )
        if command == "query":
            conn = snowflake.connector.connect(database=DATABASE)
            results = []
            for statement in json.loads(rest[0]):
                cursor = conn.cursor()
                cursor.execute(statement)
                results.append([list(row) for row in cursor.fetchall()])
            print(json.dumps(results, default=str))
            return
        from target_snowflake.target import TargetSnowflake

        sys.argv = ["target-snowflake", *rest]
        TargetSnowflake.cli()


if __name__ == "__main__":
    main()
