"""Timestamp handling: emitted date-times, bookmarks and the `verified_since` parameter.

Bookmarks are compared as instants, never as strings: the docs show both
`2026-01-07T14:30:00.000Z` and `2026-01-07T10:30:00Z`, and string comparison of the
two forms orders them wrongly.

Every date-time the tap emits, and every bookmark it writes, is RFC 3339 in UTC with
`Z` (`utc_date_time`, `format_bookmark`): some loaders store the local clock time of a
value with an offset (pipelinewise-target-postgres keeps `09:30` of `09:30-05:00`).
"""

from __future__ import annotations

import datetime as dt
import email.utils

UTC = dt.timezone.utc


def parse_timestamp(value: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp (or date) into an aware UTC datetime.

    Raises:
        ValueError: when `value` is not an ISO 8601 timestamp.
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a timestamp string")  # null or a number
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def utc_date_time(value: str) -> str | None:
    """An RFC 3339 date-time (one `records.is_date_time` accepts) as the same instant in
    UTC, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`; None when that instant falls outside the
    years 1 to 9999 in UTC.

    The fraction is kept as the API wrote it, however many digits: the offset is applied
    to the whole seconds only (a datetime would round it to microseconds).
    """
    if value[-1] == "Z" and value[10] == "T":
        return value  # already UTC: the docs' form and the sandbox's, the hot path
    tail = value[19:]
    if tail[-1] in "Zz":
        fraction, offset = tail[:-1], "+00:00"
    else:
        fraction, offset = tail[:-6], tail[-6:]
    seconds = f"{value[:10]}T{value[11:19]}"
    if offset in ("+00:00", "-00:00"):
        return f"{seconds}{fraction}Z"
    try:
        moment = dt.datetime.fromisoformat(seconds + offset).astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00, 9999-12-31T23:00:00-05:00
        return None
    return f"{moment.replace(tzinfo=None).isoformat()}{fraction}Z"


def format_bookmark(value: dt.datetime) -> str:
    """Format an instant for the state file: RFC 3339 with microseconds, UTC with `Z`
    (bookmarks written as `+00:00` by earlier versions still parse)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_verified_since(value: dt.datetime) -> str:
    """Format an inclusive lower bound for `verified_since`, in the docs' own form.

    Truncating to milliseconds moves the bound earlier, never later, so the bound stays
    inclusive of every receivable at or after `value`.
    """
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_http_date(value: str | None) -> dt.datetime | None:
    """The instant an HTTP `Date` header names (one-second resolution), or None."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000" in RFC 5322: UTC without a stated zone
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
