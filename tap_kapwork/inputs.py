"""What users hand the tap (config files, environment, state): checked before any request.

Each mistake becomes a KapworkError: one line that names the problem and what to do,
without echoing a value that could be the API key.
"""

from __future__ import annotations

import json
import os
import typing as t
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

from tap_kapwork.errors import KapworkError
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

TRUTHY = ("true", "1", "yes", "on")
STATE_HINT = (
    "Pass the value of the last STATE message of an earlier run, or leave out --state "
    "to start from start_date."
)


def _shown(value: t.Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: t.Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", float: "number"}
    return "a JSON " + names.get(type(value), "integer" if isinstance(value, int) else "null")


def read_json_file(path: str, what: str) -> t.Any:
    """The JSON in `path`; `what` names the file for the user ("config file")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KapworkError(f"Cannot read the {what} {path}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise KapworkError(f"The {what} {path} is not UTF-8 text; write it as JSON.") from None
    return parse_json(text, f"The {what} {path}")


def parse_json(text: str, subject: str) -> t.Any:
    if not text.strip():
        raise KapworkError(f"{subject} is empty.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text itself may hold the API key.
        raise KapworkError(
            f"{subject} is not valid JSON (line {exc.lineno} column {exc.colno})."
        ) from None


def read_config_files(paths: t.Sequence[str]) -> dict[str, t.Any]:
    """Merge the --config files, later ones winning, as the SDK does."""
    config: dict[str, t.Any] = {}
    for path in paths:
        content = read_json_file(path, "config file")
        if not isinstance(content, dict):
            raise KapworkError(
                f"The config file {path} holds {_kind(content)}; it must be a JSON object "
                'such as {"api_key": "…", "start_date": "2026-01-01T00:00:00Z"}.'
            )
        config |= content
    return config


def parse_state(text: str, source: str) -> dict[str, t.Any]:
    """The state file's JSON object; its shape is checked by `check_state`."""
    try:
        state = parse_json(text, f"The state file {source}")
    except KapworkError as exc:
        raise KapworkError(f"{exc} {STATE_HINT}") from None
    if not isinstance(state, dict):
        raise KapworkError(
            f"The state file {source} holds {_kind(state)}; a Singer state is an object "
            f'such as {{"bookmarks": {{…}}}}. {STATE_HINT}'
        )
    return state


def check_state(
    state: dict[str, t.Any], replication_keys: Mapping[str, str], logger: logging.Logger
) -> None:
    """Raise for bookmarks the tap cannot use; fill in a missing replication_key (warning).

    A bookmark without its replication_key would otherwise be ignored, and the run would
    quietly reload everything.
    """
    if "bookmarks" not in state:
        return
    bookmarks = state["bookmarks"]
    if not isinstance(bookmarks, dict):
        raise KapworkError(
            f'The state\'s "bookmarks" is {_kind(bookmarks)}; it must be an object of '
            f'streams such as {{"receivables": {{"replication_key_value": "…"}}}}. {STATE_HINT}'
        )
    for stream, stream_state in bookmarks.items():
        if not isinstance(stream_state, dict):
            raise KapworkError(
                f'The state\'s bookmark for "{stream}" is {_kind(stream_state)}, not an object. '
                f"{STATE_HINT}"
            )
        partitions = stream_state.get("partitions", [])
        if not isinstance(partitions, list) or not all(isinstance(p, dict) for p in partitions):
            raise KapworkError(
                f'The state\'s "partitions" of "{stream}" must be a list of objects. {STATE_HINT}'
            )
        for bookmark in (stream_state, *partitions):
            _check_bookmark(stream, bookmark, replication_keys.get(stream), logger)


def _check_bookmark(
    stream: str, bookmark: dict[str, t.Any], key: str | None, logger: logging.Logger
) -> None:
    if "replication_key_value" not in bookmark:
        return
    value = bookmark["replication_key_value"]
    where = f'The state\'s bookmark for "{stream}"'
    if "context" in bookmark:
        where += f" (partition {_shown(bookmark['context'])})"
    try:
        parse_timestamp(value)
    except (TypeError, ValueError, AttributeError):
        raise KapworkError(
            f"{where} is {_shown(value)} ({_kind(value)}), not an ISO 8601 date-time. "
            "Correct it (e.g. 2026-01-07T14:30:00Z), or remove the stream's entry to read it "
            "again from start_date."
        ) from None
    if key is None:
        return
    recorded = bookmark.get("replication_key")
    if recorded is None:
        logger.warning("%s has no replication_key; using %s as its %s bookmark.", where, value, key)
        bookmark["replication_key"] = key
    elif recorded != key:
        logger.warning(
            "%s is kept on %r, not %r, so it cannot be used: this run reads the stream "
            "again from start_date (or from the beginning).",
            where,
            recorded,
            key,
        )


def env_config(
    schema: dict[str, t.Any], prefix: str, environ: Mapping[str, str] | None = None
) -> dict[str, t.Any]:
    """Settings from `<PREFIX><SETTING>` variables (and a .env file), typed by `schema`.

    Written here rather than left to the SDK: its parser stops with a traceback on an
    integer it cannot parse and passes numbers (request_timeout=30) on as strings.
    """
    if environ is None:
        dotenv = {k: v for k, v in dotenv_values(find_dotenv(usecwd=True)).items() if v}
        environ = {**dotenv, **os.environ}  # the real environment wins over .env
    config: dict[str, t.Any] = {}
    for name, prop in schema.get("properties", {}).items():
        variable = prefix + name.upper().replace("-", "_")
        if variable not in environ:
            continue
        raw = environ[variable]
        types = prop.get("type", "string")
        types = {types} if isinstance(types, str) else set(types)
        shown = "(hidden)" if prop.get("secret") else repr(raw)
        try:
            config[name] = _env_value(raw, types, prop)
        except ValueError as exc:
            raise KapworkError(
                f"{variable}={shown} is not {exc} ({name}). Correct it, or unset it."
            ) from None
    return config


def _env_value(raw: str, types: set[str], prop: dict) -> t.Any:
    if "integer" in types:
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("a whole number") from None
    if "number" in types:
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError("a number") from None
    if "boolean" in types:
        return raw.strip().lower() in TRUTHY
    if "array" in types:
        text = raw.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError('a JSON array such as ["a","b"]') from None
            if isinstance(value, list):
                return value
        return [item.strip() for item in text.split(",") if item.strip()]
    if "object" in types:
        try:
            value = json.loads(raw)
        except ValueError:
            raise ValueError("a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError("a JSON object")
        return value
    return raw
