"""Timestamps: instants, not strings; bounds that only ever move earlier."""

from __future__ import annotations

import datetime as dt

import pytest

from tap_kapwork.records import is_date_time
from tap_kapwork.timestamps import (
    UTC,
    format_bookmark,
    format_verified_since,
    parse_http_date,
    parse_timestamp,
    utc_date_time,
)

INSTANT = dt.datetime(2026, 1, 7, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "spelling",
    [
        "2026-01-07T14:30:00Z",
        "2026-01-07T14:30:00.000Z",
        "2026-01-07T14:30:00.000000+00:00",
        "2026-01-07T09:30:00-05:00",
        "2026-01-07T14:30:00z",
        "2026-01-07T14:30:00",  # no zone: UTC
        " 2026-01-07T14:30:00Z ",
    ],
)
def test_every_spelling_of_one_instant_parses_to_it(spelling):
    assert parse_timestamp(spelling) == INSTANT
    assert parse_timestamp(spelling).tzinfo == UTC


def test_instants_order_where_their_strings_do_not():
    # As strings "…00Z" sorts after "…00.500Z" ('Z' > '.'); as instants it is earlier,
    # and the same moment as "…00.000Z".
    a, b, c = "2026-01-07T14:30:00Z", "2026-01-07T14:30:00.000Z", "2026-01-07T14:30:00.500Z"
    assert a > c
    assert parse_timestamp(a) == parse_timestamp(b) < parse_timestamp(c)


@pytest.mark.parametrize("value", [None, 1767796200, "", "yesterday", "2026-13-01T00:00:00Z"])
def test_what_is_not_a_timestamp_raises_value_error(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-07T14:30:00.000Z", "2026-01-07T14:30:00.000Z"),
        ("2026-01-07T14:30:00Z", "2026-01-07T14:30:00Z"),
        ("2026-01-07T09:30:00-05:00", "2026-01-07T14:30:00Z"),
        ("2026-01-07T16:30:00.5+02:00", "2026-01-07T14:30:00.5Z"),
        ("2026-01-07T20:00:00.123456+05:30", "2026-01-07T14:30:00.123456Z"),
        # More digits than a datetime holds: kept, not rounded.
        ("2026-01-07T09:30:00.123456789-05:00", "2026-01-07T14:30:00.123456789Z"),
        ("2026-01-07T14:30:00.000000+00:00", "2026-01-07T14:30:00.000000Z"),
        ("2026-01-07T14:30:00-00:00", "2026-01-07T14:30:00Z"),
        ("2026-01-07t14:30:00.1z", "2026-01-07T14:30:00.1Z"),
        ("2026-01-07t09:30:00-05:00", "2026-01-07T14:30:00Z"),
        # Across a day, a month, a year and a leap day.
        ("2026-12-31T20:00:00-05:00", "2027-01-01T01:00:00Z"),
        ("2024-03-01T01:00:00.25+02:00", "2024-02-29T23:00:00.25Z"),
        ("0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00Z"),
        # Outside the years 1 to 9999 in UTC: no UTC spelling.
        ("0001-01-01T00:00:00+01:00", None),
        ("9999-12-31T23:00:00-05:00", None),
    ],
)
def test_date_times_are_spelled_in_utc_with_z_keeping_the_fraction(value, expected):
    assert is_date_time(value)
    utc = utc_date_time(value)
    assert utc == expected
    if utc is not None:
        assert is_date_time(utc)
        assert parse_timestamp(utc) == parse_timestamp(value)  # the same instant


def test_a_date_time_already_in_utc_is_returned_as_is():
    value = "2026-01-07T14:30:00.000Z"
    assert utc_date_time(value) is value  # the hot path: no new string


def test_bookmarks_round_trip_with_microseconds_in_utc():
    moment = dt.datetime(2026, 1, 7, 14, 30, 0, 123456, tzinfo=UTC)
    text = format_bookmark(moment)
    assert text == "2026-01-07T14:30:00.123456Z"
    assert parse_timestamp(text) == moment
    assert format_bookmark(moment.astimezone(dt.timezone(dt.timedelta(hours=-5)))) == text
    # State written by earlier versions (`+00:00`) still reads as the same instant.
    assert parse_timestamp("2026-01-07T14:30:00.123456+00:00") == moment


def test_verified_since_is_truncated_to_milliseconds_never_later():
    moment = dt.datetime(2026, 1, 7, 14, 30, 0, 123999, tzinfo=UTC)
    text = format_verified_since(moment)
    assert text == "2026-01-07T14:30:00.123Z"
    assert parse_timestamp(text) <= moment
    other_zone = moment.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert format_verified_since(other_zone) == text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Wed, 07 Jan 2026 14:30:00 GMT", INSTANT),
        ("Wed, 07 Jan 2026 09:30:00 -0500", INSTANT),
        ("Wed, 07 Jan 2026 14:30:00 -0000", INSTANT),
        (None, None),
        ("", None),
        ("not a date", None),
    ],
)
def test_http_dates_parse_to_utc_or_none(header, expected):
    assert parse_http_date(header) == expected
