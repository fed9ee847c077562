"""A realistic portfolio: invoice-sized amounts, debtors with habits, lifecycles that move on.

The edge-case data in `data.py` is what the tap's tests need (amounts above 2**31, negative
and zero amounts, random status jumps, long histories). The demo and the dbt models need data
a finance user recognises instead: each debtor pays in its own currency and at its own pace,
and a receivable goes PENDING -> APPROVED -> PAID or SOLD, some through DISPUTED or
ACKNOWLEDGED first. `build_dataset(profile=...)` picks one of the two.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import typing as t

from kapwork_sandbox.data import UTC, Dataset, stamp

PROFILES = ("realistic", "edge")
TERMINAL = ("PAID", "SOLD")

# Each portal's own words for the normalized statuses.
LABELS: dict[str, dict[str, str]] = {
    "Coupa": {
        "PENDING": "PENDING APPROVAL",
        "ACKNOWLEDGED": "SUBMITTED",
        "APPROVED": "APPROVED FOR PAYMENT",
        "DISPUTED": "DISPUTED",
        "PAID": "PAID",
        "SOLD": "FINANCED",
    },
    "Ariba": {
        "PENDING": "SENT",
        "ACKNOWLEDGED": "RECEIVED",
        "APPROVED": "APPROVED",
        "DISPUTED": "REJECTED",
        "PAID": "RECONCILED",
        "SOLD": "SOLD TO FACTOR",
    },
    "Tradeshift": {
        "PENDING": "DELIVERED",
        "ACKNOWLEDGED": "OPENED",
        "APPROVED": "ACCEPTED",
        "DISPUTED": "ON HOLD",
        "PAID": "MARKED PAID",
        "SOLD": "FINANCED",
    },
}


@dataclasses.dataclass(frozen=True)
class Habit:
    """How a debtor treats invoices (days are drawn uniformly from the ranges)."""

    approve_days: tuple[float, float]  # detection (or end of a dispute) -> APPROVED
    pay_offset_days: tuple[float, float]  # due date -> PAID (negative: early)
    dispute: float  # chance an invoice is disputed before approval
    sold: float  # chance an approved invoice is sold to a factor instead of paid
    unpaid: float  # chance an approved invoice is still unpaid long after its due date


HABITS = {
    "prompt": Habit((1, 5), (-12, 2), dispute=0.03, sold=0.05, unpaid=0.01),
    "steady": Habit((3, 12), (-3, 12), dispute=0.08, sold=0.12, unpaid=0.03),
    "slow": Habit((10, 30), (20, 70), dispute=0.10, sold=0.15, unpaid=0.15),
    "disputing": Habit((5, 20), (5, 35), dispute=0.45, sold=0.05, unpaid=0.08),
}
# name, currency, habit
DEBTORS = [
    ("Northwind Traders", "USD", "prompt"),
    ("Contoso Retail", "USD", "steady"),
    ("Globex Corporation", "USD", "slow"),
    ("Initech", "USD", "disputing"),
    ("Umbrella Health", "USD", "steady"),
    ("Wayne Enterprises", "USD", "prompt"),
    ("Kaufhaus Größe AG", "EUR", "steady"),
    ("Société Générale d'Achats", "EUR", "slow"),
    ("Lindqvist Handel AB", "EUR", "disputing"),
    ("Britannia Foods plc", "GBP", "prompt"),
    ("Thames Logistics Ltd", "GBP", "slow"),
    ("Maple Leaf Grocers", "CAD", "steady"),
]
VENDORS = [
    "Acme Corp",
    "Müller & Söhne GmbH",
    "O'Brien Supply Co.",
    "Nordström Logistik AB",
    "Zürich Präzision AG",
    "García y Hijos S.L.",
    "Fjord & Fell AS",
    "Dvořák Instruments",
]
NEXT: dict[str, list[tuple[str, float]]] = {
    # What `mutate` may do next from each open status (weights).
    "PENDING": [("APPROVED", 0.7), ("ACKNOWLEDGED", 0.15), ("DISPUTED", 0.15)],
    "ACKNOWLEDGED": [("APPROVED", 0.8), ("DISPUTED", 0.2)],
    "DISPUTED": [("APPROVED", 0.7), ("PENDING", 0.3)],
    "APPROVED": [("PAID", 0.8), ("SOLD", 0.2)],
}
MAX_AGE_DAYS = 240  # invoice dates spread over the last eight months


@functools.cache
def _transition(before: str, after: str) -> dict[str, str]:
    """`{"from": before, "to": after}`, one dict per pair of statuses, shared by every
    history entry that makes that change (nothing changes an entry in place): a million
    receivables take about a fifth less memory."""
    return {"from": before, "to": after}


class RealisticDataset(Dataset):
    """Same API and queries as `Dataset`; different receivables and a forward-only lifecycle."""

    def __init__(
        self,
        receivables: int,
        seed: int,
        anchor: dt.datetime | None = None,
        clock_offset: dt.timedelta = dt.timedelta(0),
    ) -> None:
        super().__init__(0, seed, anchor, clock_offset)
        self.vendors = [self._party(name) for name in VENDORS]
        self.debtors = [self._party(name) for name, _, _ in DEBTORS]
        self.habits = {
            party["id"]: (currency, HABITS[habit])
            for party, (_, currency, habit) in zip(self.debtors, DEBTORS, strict=True)
        }
        self._fresh = False
        self._populate(receivables)

    # generation ---------------------------------------------------------------------

    def _amount(self) -> int:
        # Log-normal around 8,000.00 (invoice-sized), between 150.00 and 400,000.00.
        cents = math.exp(self._rng.gauss(math.log(800_000), 1.0))
        return int(min(max(cents, 15_000), 40_000_000))

    def _days(self, low: float, high: float) -> dt.timedelta:
        return dt.timedelta(milliseconds=int(self._rng.uniform(low, high) * 86_400_000))

    def _generate(self) -> dict:
        rng = self._rng
        portal = rng.choice(list(LABELS))
        debtor = rng.choice(self.debtors)
        currency, habit = self.habits[debtor["id"]]
        if self._fresh:
            detected = self.now()
            receivable_date = detected.date()
        else:
            invoiced = self.anchor - self._days(0, MAX_AGE_DAYS)
            receivable_date = invoiced.date()
            detected = min(invoiced + self._days(0.1, 4), self.anchor - self._days(0.01, 0.5))
        due_date = receivable_date + dt.timedelta(days=rng.choice([30, 30, 45, 60, 60, 90]))
        state: dict[str, t.Any] = {
            "status": "PENDING",
            "portal_status": LABELS[portal]["PENDING"],
            "amount_cents": self._amount(),
            "due_date": due_date.isoformat(),
            "po_number": f"PO-{rng.randint(1, 99999):05d}" if rng.random() < 0.7 else None,
            "vendor_receivable_id": f"INV-{receivable_date.year}-{rng.randint(1, 999999):06d}",
        }
        history: list[dict] = []
        if not self._fresh:
            for moment, status in self._lifecycle(detected, due_date, habit):
                if moment >= self.anchor:
                    break
                changes = self._move(state, portal, status)
                if status == "APPROVED" and state["po_number"] is None and rng.random() < 0.5:
                    changes["po_number"] = {"from": None, "to": f"PO-{rng.randint(1, 99999):05d}"}
                    state["po_number"] = changes["po_number"]["to"]
                history.append({"changed_at": stamp(moment), "changes": changes})
        history.reverse()
        updated = history[0]["changed_at"] if history else stamp(detected)
        open_ = state["status"] not in TERMINAL
        return {
            "id": self._new_id(),
            "object": "receivable",
            "vendor_receivable_id": state["vendor_receivable_id"],
            # shared by its receivables, as the transitions are (`_transition`)
            "vendor": rng.choice(self.vendors),
            "debtor": debtor,
            "amount_cents": state["amount_cents"],
            "currency": currency,
            "receivable_date": receivable_date.isoformat(),
            "due_date": state["due_date"],
            "status": state["status"],
            "portal_status": state["portal_status"],
            "po_number": state["po_number"],
            "detected_at": stamp(detected),
            "updated_at": updated,
            "estimated_next_update_at": stamp(self.anchor + dt.timedelta(hours=rng.randint(1, 48)))
            if open_
            else None,
            "history": history,
            "_verified_at": updated,
            "metadata": {
                "payment_terms": f"NET{(due_date - receivable_date).days}",
                "supplier_code": f"SUP-{rng.randint(1, 999999):06d}",
            },
            "_portal": portal,
        }

    def _lifecycle(
        self, detected: dt.datetime, due_date: dt.date, habit: Habit
    ) -> list[tuple[dt.datetime, str]]:
        """Status changes after detection, at strictly increasing millisecond instants."""
        rng = self._rng
        moment = detected
        steps: list[tuple[dt.datetime, str]] = []

        def step(after: dt.timedelta, status: str) -> None:
            nonlocal moment
            moment = max(moment + after, moment + dt.timedelta(milliseconds=1))
            steps.append((moment, status))

        if rng.random() < 0.25:
            step(self._days(0.2, 3), "ACKNOWLEDGED")
        if rng.random() < habit.dispute:
            step(self._days(2, 15), "DISPUTED")
            if rng.random() < 0.25:
                step(self._days(5, 25), "PENDING")  # corrected invoice re-sent
        step(self._days(*habit.approve_days), "APPROVED")
        if rng.random() < habit.sold:
            step(self._days(1, 10), "SOLD")
        elif rng.random() >= habit.unpaid:
            due = dt.datetime.combine(due_date, dt.time(12), UTC)
            paid = due + self._days(*habit.pay_offset_days)
            step(max(paid - moment, self._days(0.5, 3)), "PAID")
        return steps

    def _move(self, state: dict[str, t.Any], portal: str, status: str) -> dict[str, dict]:
        """Set a new status (and the portal's word for it) in `state`; the changes made."""
        label = LABELS.get(portal, LABELS["Coupa"])[status]
        changes = {
            "status": _transition(state["status"], status),
            "portal_status": _transition(state["portal_status"], label),
        }
        state["status"], state["portal_status"] = status, label
        return changes

    # mutation -----------------------------------------------------------------------

    def _change(
        self,
        state: dict[str, t.Any],
        portal: str,
        changed_at: str,
        fields: t.Sequence[str] | None = None,
    ) -> dict:
        """One step forward in the lifecycle (used by `mutate`); closed ones get a new PO.

        NB: overrides the edge profile's random field changes, so a PAID receivable never
        goes back to PENDING.
        """
        rng = self._rng
        choices = NEXT.get(state["status"])
        if choices is None:
            new = f"PO-{rng.randint(1, 99999):05d}"
            changes = {"po_number": {"from": state["po_number"], "to": new}}
            state["po_number"] = new
        else:
            statuses, weights = zip(*choices, strict=True)
            changes = self._move(state, portal, rng.choices(statuses, weights)[0])
        return {"changed_at": changed_at, "changes": changes}

    def insert(self, count: int) -> list[str]:
        """New receivables, detected now, PENDING and without history."""
        self._fresh = True
        try:
            return super().insert(count)
        finally:
            self._fresh = False


def build_dataset(
    profile: str,
    receivables: int,
    seed: int,
    anchor: dt.datetime | None = None,
    clock_offset: dt.timedelta = dt.timedelta(0),
    same_instant_share: float = 0.0,
) -> Dataset:
    """`edge`: the edge cases the tap's tests use; `realistic`: the demo's portfolio."""
    if profile == "edge":
        return Dataset(receivables, seed, anchor, clock_offset, same_instant_share)
    if profile == "realistic":
        return RealisticDataset(receivables, seed, anchor, clock_offset)
    raise ValueError(f"unknown sandbox profile {profile!r}: use one of {', '.join(PROFILES)}")
