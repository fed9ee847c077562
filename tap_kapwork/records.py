"""Every RECORD validates against the SCHEMA the tap declared, or the run stops.

Conformance is off in the SDK for speed (see streams.py), and loaders may skip their
own validation, so the guarantee lives here. A value is only ever normalised when its
meaning stays the same (150000.0 is the integer 150000); anything the schema cannot
hold ends the run with one line naming the receivable and the field. Never a silent
change: a bigint column must not receive a rounded amount.

The checks are written by hand, not with jsonschema: they run once per receivable and
once per history entry, and a full validator costs tens of microseconds per record.
tests/test_records.py validates the output with jsonschema itself.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t

from tap_kapwork.errors import KapworkError
from tap_kapwork.timestamps import utc_date_time

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# RFC 3339 date-times as jsonschema checks them, and ISO 8601 calendar dates.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
).fullmatch
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}").fullmatch
# The characters at offsets 4, 7, 10, 13 and 16 of YYYY-MM-DDTHH:MM:SS.
_SEPARATORS = frozenset({"--T::", "--t::"})
# Calendar validity of the YYYY-MM-DD part, cached: a run sees a few hundred dates.
_calendar: dict[str, bool] = {}


class SchemaViolationError(KapworkError):
    """A value the API sent that the declared schema cannot hold."""


def _is_calendar_date(text: str) -> bool:
    known = _calendar.get(text)
    if known is None:
        try:
            dt.date.fromisoformat(text)
            known = True
        except ValueError:
            known = False
        if len(_calendar) > 100_000:
            _calendar.clear()
        _calendar[text] = known
    return known


def is_date_time(value: object) -> bool:
    """True for an RFC 3339 date-time string such as 2026-01-07T14:30:00.000Z."""
    if type(value) is not str:
        return False
    # Fast path (the regex costs twice as much): RFC 3339's fixed punctuation, then the
    # C parser for digits and ranges; what it rejects (long fractions on Python 3.10)
    # gets the regex. Both agree with jsonschema's "date-time" check (rfc3339-validator),
    # which is stricter than RFC 3339 itself: no space separator, no leap second.
    if len(value) >= 20 and value[4:17:3] in _SEPARATORS and value[19] in ".Zz+-":
        tail = value[-1]
        if tail == "Z" or tail == "z":
            text = value[:-1]
        elif value[-6] in "+-" and value[-3] == ":":
            text = value
        else:
            return False
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return True
    if _DATE_TIME(value) is None:
        return False
    known = _calendar.get(value[:10])
    return known if known is not None else _is_calendar_date(value[:10])


def is_date(value: object) -> bool:
    """True for a YYYY-MM-DD calendar date."""
    if type(value) is not str:
        return False
    known = _calendar.get(value)  # a run sees a few hundred dates: mostly a dict hit
    if known is not None:
        return known
    return _DATE(value) is not None and _is_calendar_date(value)


def _kind(value: object) -> str:
    return "a JSON " + {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        dict: "object",
        list: "array",
    }.get(type(value), type(value).__name__)


class _Unfit(Exception):
    """Internal: a value a check rejected, with why; becomes SchemaViolationError."""

    def __init__(self, why: str) -> None:
        self.why = why


def _string(value: t.Any) -> t.Any:
    if type(value) is not str:
        raise _Unfit("is not a string")
    return value


def _int64(value: t.Any) -> t.Any:
    if type(value) is float and value.is_integer():
        value = int(value)  # 150000.0 is 150000: the same number, spelled as JSON allows
    if type(value) is not int:
        raise _Unfit("is not an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Unfit("does not fit the schema's 64-bit integer")
    return value


def _date(value: t.Any) -> t.Any:
    if not is_date(value):
        raise _Unfit("is not a YYYY-MM-DD date")
    return value


def _date_time(value: t.Any) -> t.Any:
    if not is_date_time(value):
        raise _Unfit("is not an ISO 8601 date-time with a time zone (e.g. 2026-01-07T14:30:00Z)")
    utc = utc_date_time(value)  # the same instant, spelled in UTC with Z
    if utc is None:
        raise _Unfit("is outside the years 1 to 9999 once converted to UTC")
    return utc


def _object(value: t.Any) -> t.Any:
    if type(value) is not dict:
        raise _Unfit("is not an object")
    return value


def _party(value: t.Any) -> t.Any:
    _object(value)
    for key in ("id", "name"):
        inner = value.get(key)
        if inner is not None and type(inner) is not str:
            raise _Unfit(f"is not an object whose '{key}' is a string")
    return value


_BY_SCHEMA: dict[tuple[str, str | None], Callable[[t.Any], t.Any]] = {
    ("string", None): _string,
    ("string", "date"): _date,
    ("string", "date-time"): _date_time,
    ("integer", None): _int64,
    ("object", None): _object,
}


def _checker(name: str, prop: dict) -> Callable[[t.Any], t.Any] | None:
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else [x for x in types if x != "null"]
    if len(types) != 1:
        return None  # a union (history values): handled by history_value
    kind = types[0]
    if kind == "integer" and (
        prop.get("minimum", INT64_MIN) < INT64_MIN or prop.get("maximum", INT64_MAX) > INT64_MAX
    ):
        raise TypeError(f"{name}: only 64-bit integers are checked")
    if kind == "object" and "properties" in prop:
        return _party  # vendor and debtor: {id, name}
    return _BY_SCHEMA.get((kind, prop.get("format")))


class ReceivableConformer:
    """Checks (and where the meaning is unchanged, normalises) one receivable's fields.

    `fields` are the properties to emit; a deselected property is neither emitted nor
    checked, so deselecting a field the API fills wrongly lets a run go on.
    """

    def __init__(self, schema: dict, fields: Iterable[str]) -> None:
        properties = schema["properties"]
        self.fields = frozenset(fields)
        self._checks = {
            name: check
            for name in self.fields
            if (check := _checker(name, properties[name])) is not None
        }
        # A plain string, or a dict with no declared properties, is right by its type
        # alone (one comparison); the other fields go through their check.
        self._by_type = tuple(
            (name, str if check is _string else dict)
            for name, check in self._checks.items()
            if check in (_string, _object)
        )
        self._checked = tuple(
            (name, check) for name, check in self._checks.items() if check not in (_string, _object)
        )
        self._required = tuple(n for n in schema.get("required", ()) if n in self.fields)

    def __call__(self, row: dict) -> dict:
        """The schema's fields of `row`, each as the schema declares it."""
        fields = self.fields
        record = {key: value for key, value in row.items() if key in fields}
        get = record.get
        for key, kind in self._by_type:
            value = get(key)
            if value is not None and type(value) is not kind:
                self._check(row, record, key)
        for key, check in self._checked:
            value = get(key)
            if value is not None:
                try:
                    checked = check(value)
                except _Unfit as unfit:
                    raise violation(row.get("id"), key, value, unfit.why) from None
                if checked is not value:  # normalised: 150000.0 -> 150000, -05:00 -> Z
                    record[key] = checked
        for key in self._required:
            if get(key) is None:
                raise violation(row.get("id"), key, None, "is required")
        return record

    def _check(self, row: dict, record: dict, key: str) -> None:
        """A value of the wrong type: raise the one-line error."""
        value = record[key]
        try:
            self._checks[key](value)
        except _Unfit as unfit:
            raise violation(row.get("id"), key, value, unfit.why) from None
        raise violation(row.get("id"), key, value, "is not of the schema's type")


def violation(receivable_id: t.Any, field: str, value: t.Any, why: str) -> KapworkError:
    """One line naming the receivable, the field, the value and what to do."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return SchemaViolationError(
        f"Receivable {receivable_id} has {field} {shown} ({_kind(value)}), which {why}. "
        "The tap stops rather than load a changed value: ask Kapwork to correct the "
        f"receivable, or deselect '{field}' in the catalog."
        if value is not None
        else f"Receivable {receivable_id} has no {field}, which the schema requires; the API "
        "response does not match the documented receivable object."
    )
