"""What the dbt models must contain, computed independently in Python from the sandbox truth."""

from __future__ import annotations

import datetime as dt
import statistics
import typing as t
from collections import defaultdict
from dataclasses import dataclass

from kapwork_sandbox.data import parse_moment

CLOSED = ("PAID", "SOLD")


def naive(value: str) -> dt.datetime:
    """A truth timestamp as the warehouses hand it back: UTC, without a zone."""
    return parse_moment(value).replace(tzinfo=None)


@dataclass(frozen=True)
class Spell:
    status: str
    entered_at: dt.datetime
    left_at: dt.datetime | None


def spells(receivable: dict) -> list[Spell]:
    """The stretches in each status, from the receivable's status history."""
    changes = sorted(
        (naive(entry["changed_at"]), change["from"], change["to"])
        for entry in receivable["history"]
        for name, change in entry["changes"].items()
        if name == "status"
    )
    detected = naive(receivable["detected_at"])
    status = changes[0][1] if changes else receivable["status"]
    starts = [(status, min([detected, *(c[0] for c in changes[:1])]))]
    starts += [(to, moment) for moment, _, to in changes]
    ends = [moment for _, moment in starts[1:]] + [None]
    return [Spell(s, entered, left) for (s, entered), left in zip(starts, ends, strict=True)]


def bucket(receivable: dict, as_of: dt.date) -> str | None:
    if receivable["status"] in CLOSED:
        return None
    if receivable["due_date"] is None:
        return "no due date"
    late = (as_of - dt.date.fromisoformat(receivable["due_date"])).days
    if late <= 0:
        return "not yet due"
    for limit, name in ((30, "1-30"), (60, "31-60"), (90, "61-90")):
        if late <= limit:
            return name
    return "over 90"


def aging_totals(truth: list[dict], as_of: dt.date) -> dict[tuple[str, str], int]:
    """(currency, aging bucket) -> open amount in cents."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for receivable in truth:
        if (name := bucket(receivable, as_of)) is not None:
            totals[receivable["currency"], name] += receivable["amount_cents"]
    return dict(totals)


def _days(start: dt.datetime, end: dt.datetime) -> float:
    return (end - start).total_seconds() / 86400


def debtor_medians(truth: list[dict]) -> dict[tuple[str, str], dict[str, t.Any]]:
    """(debtor id, currency) -> medians of days to APPROVED and to PAID, share disputed."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for receivable in truth:
        groups[receivable["debtor"]["id"], receivable["currency"]].append(receivable)
    out = {}
    for key, receivables in groups.items():
        approved, paid, disputed = [], [], 0
        for receivable in receivables:
            detected = naive(receivable["detected_at"])
            by_status: dict[str, dt.datetime] = {}
            for spell in spells(receivable):
                by_status.setdefault(spell.status, spell.entered_at)
            if "APPROVED" in by_status:
                approved.append(_days(detected, by_status["APPROVED"]))
            if "PAID" in by_status:
                paid.append(_days(detected, by_status["PAID"]))
            disputed += "DISPUTED" in by_status
        out[key] = {
            "receivables": len(receivables),
            "median_days_to_approved": statistics.median(approved) if approved else None,
            "median_days_to_paid": statistics.median(paid) if paid else None,
            "share_ever_disputed": disputed / len(receivables),
            "paid_cents": sum(r["amount_cents"] for r in receivables if r["status"] == "PAID"),
        }
    return out
