"""Timestamp handling for bookmarks and the `verified_since` parameter.

Bookmarks are compared as instants, never as strings: the docs show both
`2026-01-07T14:30:00.000Z` and `2026-01-07T10:30:00Z`, and string comparison of the
two forms orders them wrongly.
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


def format_bookmark(value: dt.datetime) -> str:
    """Format an instant for the state file: ISO 8601 with microseconds, UTC."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


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
