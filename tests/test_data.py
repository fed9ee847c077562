"""kapwork_sandbox.data: the data for a seed, and the list endpoint's queries over it."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import random
import typing as t

import pytest

from kapwork_sandbox.data import Dataset
from kapwork_sandbox.portfolio import build_dataset

ANCHOR = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("profile", "same_instant_share", "expected"),
    [
        ("edge", 0.0, "f94eee16e5326c56"),
        ("realistic", 0.0, "d7d07343b2ce8e4b"),
        ("edge", 0.2, "9f53fcd65aa3b071"),
    ],
)
def test_a_seed_gives_the_same_data_as_before(profile, same_instant_share, expected):
    """Tests compare the tap with the truth, and some README figures depend on seeds: the
    hashes were taken from the data before the listing indexes existed."""
    dataset = build_dataset(profile, 300, 11, ANCHOR, dt.timedelta(0), same_instant_share)
    text = json.dumps(dataset.truth(), sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == expected


def scan(
    dataset: Dataset, since: str | None, filters: dict[str, str], order: str, field: str
) -> list[str]:
    """The list endpoint's answer, the slow way: every receivable looked at."""
    records = dataset.records
    if field == "verified_at":
        entries = sorted((r["_verified_at"], rid) for rid, r in records.items())
    else:
        entries = list(dataset._index)  # updated_at as indexed (set_raw does not move it)
    ids = [
        rid
        for at, rid in entries
        if (since is None or at >= since)
        and records[rid]["vendor"]["id"] == filters.get("vendor_id", records[rid]["vendor"]["id"])
        and records[rid]["debtor"]["id"] == filters.get("debtor_id", records[rid]["debtor"]["id"])
        and records[rid]["status"] == filters.get("status", records[rid]["status"])
    ]
    if order == "updated_at_desc":
        ids.reverse()
    elif order == "id":
        ids.sort()
    return ids


def listings(dataset: Dataset) -> t.Iterator[tuple]:
    middle = sorted(r["updated_at"] for r in dataset.records.values())[len(dataset.records) // 2]
    vendor = {"vendor_id": dataset.vendors[0]["id"]}
    both = {"debtor_id": dataset.debtors[1]["id"], "status": "PAID"}
    yield from itertools.product(
        (None, middle),
        ({}, vendor, {"status": "APPROVED"}, both),
        ("updated_at", "updated_at_desc", "id"),
        ("updated_at", "verified_at"),
    )


@pytest.mark.parametrize("profile", ["edge", "realistic"])
def test_every_listing_matches_a_full_scan_while_the_data_changes(profile):
    """The kept listings and indexes answer what a pass over every receivable answers,
    after each kind of change (update, backdated update, insert, verification, raw
    values): a change is never hidden by a listing kept from before it."""
    dataset = build_dataset(profile, 400, 5, ANCHOR, dt.timedelta(0))
    rng = random.Random(9)
    changes: list[t.Callable[[], object]] = [
        lambda: dataset.mutate(7, seed=rng.getrandbits(32)),
        lambda: dataset.mutate(3, seed=rng.getrandbits(32), backdate_seconds=3600),
        lambda: dataset.insert(4),
        lambda: dataset.verify(rng.sample(sorted(dataset.records), 5)),
        lambda: dataset.set_raw(rng.choice(sorted(dataset.records)), status="PAID"),
    ]
    for change in [lambda: None, *changes, *changes]:
        change()
        for since, filters, order, field in listings(dataset):
            expected = scan(dataset, since, filters, order, field)
            # twice: the second answer is the kept one
            for _ in range(2):
                assert list(dataset.select(since, filters, order, field)) == expected


class CountingRecords(dict):
    """`Dataset.records` that counts how often a receivable is looked at."""

    looked_at = 0

    def __getitem__(self, key: str) -> dict:
        CountingRecords.looked_at += 1
        return super().__getitem__(key)

    def items(self) -> t.Any:
        CountingRecords.looked_at += len(self)
        return super().items()


@pytest.mark.parametrize(
    ("filters", "field"),
    [({"status": "PAID"}, "updated_at"), ({}, "verified_at"), ({"status": "PAID"}, "verified_at")],
)
def test_pages_after_the_first_look_at_no_receivable(filters, field):
    """Each page used to cost a pass over every receivable (4 pages a second at a
    million); pages 2..N of one listing now slice the ids kept from page 1."""
    dataset = build_dataset("realistic", 2000, 3, ANCHOR, dt.timedelta(0))
    dataset.records = CountingRecords(dataset.records)
    first = dataset.select(None, filters, "updated_at", field)
    assert CountingRecords.looked_at >= len(first) > 0
    CountingRecords.looked_at = 0
    for _ in range(20):
        assert dataset.select(None, filters, "updated_at", field) == first
    assert CountingRecords.looked_at == 0
    # A change: the next page selects afresh (rows shift as on the real API).
    moved = first[0]
    dataset.mutate(0, ids=[moved])
    again = dataset.select(None, filters, "updated_at", field)
    assert moved not in again[:1]
    assert CountingRecords.looked_at > 0
