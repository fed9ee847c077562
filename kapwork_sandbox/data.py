"""Deterministic receivables with histories, and the queries the list endpoint needs."""

from __future__ import annotations

import bisect
import contextlib
import copy
import datetime as dt
import gc
import random
import threading
import time
import typing as t

UTC = dt.timezone.utc
STATUSES = ("PENDING", "APPROVED", "PAID", "SOLD", "DISPUTED", "ACKNOWLEDGED")
# portal -> (portal_status, normalized status) pairs, quotes and unicode included
PORTALS: dict[str, list[tuple[str, str]]] = {
    "Coupa": [
        ("SUBMITTED", "PENDING"),
        ("PENDING APPROVAL", "PENDING"),
        ("APPROVED FOR PAYMENT", "APPROVED"),
        ('APPROVED FOR PAYMENT - BATCH "Q4"', "APPROVED"),
        ("PAID", "PAID"),
        ("DISPUTED", "DISPUTED"),
    ],
    "Ariba": [
        ("SENT", "PENDING"),
        ("APPROVED", "APPROVED"),
        ("RECONCILED", "PAID"),
        ("REJECTED", "DISPUTED"),
        ("EN ATTENTE D'APPROBATION", "PENDING"),
    ],
    "Tradeshift": [
        ("DELIVERED", "ACKNOWLEDGED"),
        ("ACCEPTED", "APPROVED"),
        ("MARKED PAID", "PAID"),
        ("Genehmigt – Zahlung geplant", "APPROVED"),  # noqa: RUF001 (unicode on purpose)
        ("FINANCED", "SOLD"),
    ],
    "Generic": [
        ("OVERDUE", "PENDING"),
        ("ON HOLD", "DISPUTED"),
        ("承認済み", "APPROVED"),
        ("SOLD TO FACTOR", "SOLD"),
        ("RECEIVED ✓", "ACKNOWLEDGED"),
    ],
}
VENDOR_NAMES = [
    "Acme Corp",
    'Müller & "Söhne" GmbH',
    "O'Brien Supply Co.",
    "株式会社テスト",
    "Café ☕ Ltd",
    "Nordström Logistik AB",
    "Łódź Metalworks",
    "Smith & Wesson's Parts",
    "Ωmega Components",
    "São Paulo Têxtil",
    "Zürich Präzision AG",
    'The "Best" Widgets',
    "Dvořák Instruments",
    "北京贸易有限公司",
    "Ünal Tekstil",
    "García y Hijos S.L.",
    "Back\\slash Industries",
    "Fjord & Fell AS",
    "Crème Brûlée Bakery",
    "Tab\tSeparated Inc",
]
DEBTOR_STEMS = [
    "BigBuyer Inc",
    "Globex",
    "Initech",
    "Umbrella Retail",
    "Wayne Enterprises",
    "Stark Industries",
    "Société Générale d'Achats",
    'Buyer "Prime" LLC',
    "Kaufhaus Größe",
    "Tokyo 商事",
]
TERMS = ["NET30", "NET45", "NET60", "2/10 NET 30", "NET90", "Due on receipt"]
TRACKED = ("status", "amount_cents", "due_date", "po_number", "vendor_receivable_id")
LISTINGS_KEPT = 16  # Dataset.select: listings whose ids are kept (a few bytes per id)


def stamp(moment: dt.datetime) -> str:
    """The docs' timestamp form: millisecond precision, Z. Sorts as it reads."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_moment(value: str) -> dt.datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@contextlib.contextmanager
def quiet_collector() -> t.Iterator[None]:
    """No cyclic garbage collection while the data is generated: it is millions of small
    dicts and lists and no cycles, and the collector, running every 700 new objects and
    rescanning the older ones, took a third of the time (100,000 realistic receivables:
    7.8 s of CPU with it, 5.4 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def default_anchor(clock_offset: dt.timedelta = dt.timedelta(0)) -> dt.datetime:
    return (dt.datetime.now(UTC) + clock_offset).replace(minute=0, second=0, microsecond=0)


class Dataset:
    """All receivables of one partner, with full histories, newest change first.

    Each receivable also has a verification time (`_verified_at`, never shown): when
    Kapwork last checked it. A change verifies it; `verify` does so without a change.
    """

    def __init__(
        self,
        receivables: int,
        seed: int,
        anchor: dt.datetime | None = None,
        clock_offset: dt.timedelta = dt.timedelta(0),
        same_instant_share: float = 0.0,
    ) -> None:
        self.seed = seed
        # The API's clock: this machine's plus `clock_offset` (stamps of new changes).
        self.clock_offset = clock_offset
        # Share of histories with two changes of `portal_status` stamped with one instant.
        self.same_instant_share = same_instant_share
        self.anchor = (anchor or default_anchor(clock_offset)).astimezone(UTC)
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.vendors = [self._party(name) for name in VENDOR_NAMES]
        self.debtors = [
            self._party(f"{stem} {region}".strip())
            for stem in DEBTOR_STEMS
            for region in ("", "EMEA", "APAC", "Americas", "Ltd")
        ]
        self.records: dict[str, dict] = {}
        self._index: list[tuple[str, str]] = []  # (updated_at, id), sorted
        self._last_stamp = self.anchor
        self.version = 0
        # Dataset.select: the ids of the last few listings read, valid for one `version`.
        self._listings: dict[tuple, tuple[str, ...]] = {}
        self._listings_version = -1
        self._verified: list[tuple[str, str]] | None = None  # (_verified_at, id), sorted
        self._populate(receivables)

    # generation ---------------------------------------------------------------------

    def _populate(self, receivables: int) -> None:
        with quiet_collector():
            for _ in range(receivables):
                record = self._generate()
                self.records[record["id"]] = record
            self._index = sorted((r["updated_at"], r["id"]) for r in self.records.values())

    def _party(self, name: str) -> dict[str, str]:
        h = f"{self._rng.getrandbits(128):032x}"
        return {"id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", "name": name}

    def _new_id(self) -> str:
        while True:
            # The docs show both prefixes; clients must not rely on either.
            prefix = "rec_" if self._rng.random() < 0.1 else "rcv_"
            candidate = f"{prefix}{self._rng.getrandbits(128):032x}"
            if candidate not in self.records:
                return candidate

    def _amount(self) -> int:
        roll = self._rng.random()
        if roll < 0.02:
            return self._rng.randint(2**31 + 1, 10**13)
        if roll < 0.05:
            return -self._rng.randint(100, 5_000_000)
        if roll < 0.055:
            return 0
        return self._rng.randint(10_000, 50_000_000)

    def _metadata(self) -> dict[str, t.Any]:
        rng = self._rng
        if rng.random() < 0.1:
            return {}
        meta: dict[str, t.Any] = {
            "payment_terms": rng.choice(TERMS),
            "supplier_code": f"SUP-{rng.randint(1, 999999):06d}",
        }
        if rng.random() < 0.6:
            meta["buyer_contact"] = rng.choice(["john@bigbuyer.com", "zoë@käufer.de", None])
        if rng.random() < 0.3:
            meta["original_filename"] = rng.choice(["invoices_jan_2026.csv", "Rechnung «März».pdf"])
        if rng.random() < 0.2:
            meta["custom"] = {"cost_center": f"CC-{rng.randint(1, 99)}", "tags": ["net", "eu"]}
        return meta

    def _history_length(self) -> int:
        roll = self._rng.random()
        if roll < 0.30:
            return 0
        if roll < 0.82:
            return self._rng.randint(1, 8)
        if roll < 0.96:
            return self._rng.randint(10, 40)
        return self._rng.randint(51, 80)

    def _generate(self) -> dict:
        rng = self._rng
        portal = rng.choice(list(PORTALS))
        changes = self._history_length()
        ms = 1000 * 3600 * 24
        if rng.random() < 0.03:
            updated = self.anchor - dt.timedelta(milliseconds=rng.randint(1, 23 * 3600 * 1000))
        else:
            updated = self.anchor - dt.timedelta(milliseconds=rng.randint(ms, 300 * ms))
        detected = (
            updated - dt.timedelta(milliseconds=rng.randint(changes * 1000, 100 * ms))
            if changes
            else updated
        )
        receivable_date = (detected - dt.timedelta(days=rng.randint(0, 10))).date()
        portal_status, status = rng.choice(PORTALS[portal][:2])
        state: dict[str, t.Any] = {
            "status": status,
            "portal_status": portal_status,
            "amount_cents": self._amount(),
            "due_date": None
            if rng.random() < 0.15
            else (receivable_date + dt.timedelta(days=rng.choice([30, 45, 60, 90]))).isoformat(),
            "po_number": None if rng.random() < 0.2 else f"PO-{rng.randint(1, 99999):05d}",
            "vendor_receivable_id": None
            if rng.random() < 0.1
            else f"INV-{receivable_date.year}-{rng.randint(1, 999999):06d}",
        }
        # Change instants: strictly increasing, the last exactly `updated`.
        span = int((updated - detected).total_seconds() * 1000)
        offsets = sorted(rng.sample(range(1, span), changes - 1)) if changes > 1 else []
        moments = [detected + dt.timedelta(milliseconds=o) for o in offsets]
        if changes:
            moments.append(updated)
        paired: tuple[int, ...] = ()
        # Drawn only when asked for, so that existing seeds give the same data.
        if self.same_instant_share and changes >= 2 and rng.random() < self.same_instant_share:
            first = rng.randrange(changes - 1)
            paired = (first, first + 1)
            moments[first] = moments[first + 1]  # e.g. PENDING→APPROVED, APPROVED→PAID at once
        history = [
            self._change(state, portal, stamp(m), ("status",) if i in paired else None)
            for i, m in enumerate(moments)
        ]
        history.reverse()
        return {
            "id": self._new_id(),
            "object": "receivable",
            "vendor_receivable_id": state["vendor_receivable_id"],
            "vendor": dict(rng.choice(self.vendors)),
            "debtor": dict(rng.choice(self.debtors)),
            "amount_cents": state["amount_cents"],
            "currency": rng.choice(["USD", "USD", "USD", "EUR", "GBP"]),
            "receivable_date": receivable_date.isoformat(),
            "due_date": state["due_date"],
            "status": state["status"],
            "portal_status": state["portal_status"],
            "po_number": state["po_number"],
            "detected_at": stamp(detected),
            "updated_at": stamp(updated),
            "estimated_next_update_at": None
            if rng.random() < 0.15
            else stamp(updated + dt.timedelta(hours=rng.randint(1, 48))),
            "history": history,
            "metadata": self._metadata(),
            "_portal": portal,
            "_verified_at": stamp(updated),
        }

    def _change(
        self,
        state: dict[str, t.Any],
        portal: str,
        changed_at: str,
        fields: t.Sequence[str] | None = None,
    ) -> dict:
        """Apply 1-3 field changes to `state` (or these `fields`); return the history entry."""
        rng = self._rng
        if fields is None:
            fields = rng.sample(TRACKED, rng.choice([1, 1, 1, 2, 3]))
        changes: dict[str, dict[str, t.Any]] = {}
        for field in fields:
            old = state[field]
            new: t.Any
            if field == "status":
                portal_status, new = rng.choice(
                    [p for p in PORTALS[portal] if p[0] != state["portal_status"]]
                )
                if new != old:
                    changes["status"] = {"from": old, "to": new}
                changes["portal_status"] = {"from": state["portal_status"], "to": portal_status}
                state["status"], state["portal_status"] = new, portal_status
                continue
            if field == "amount_cents":
                new = old + rng.choice([-1, 1]) * rng.randint(1, 100_000) if old else self._amount()
            elif field == "due_date":
                if old is None or rng.random() < 0.1:
                    new = None if old is not None else "2026-03-31"
                else:
                    new = (
                        dt.date.fromisoformat(old) + dt.timedelta(days=rng.choice([-15, 15, 30]))
                    ).isoformat()
            elif field == "po_number":
                new = f"PO-{rng.randint(1, 99999):05d}"
            else:
                new = f"INV-{rng.randint(2024, 2026)}-{rng.randint(1, 999999):06d}"
            if new == old:
                continue
            changes[field] = {"from": old, "to": new}
            state[field] = new
        if not changes:
            changes["portal_status"] = {
                "from": state["portal_status"],
                "to": state["portal_status"] + " (re-sent)",
            }
            state["portal_status"] += " (re-sent)"
        return {"changed_at": changed_at, "changes": changes}

    # mutation -----------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The sandbox API's clock."""
        return dt.datetime.now(UTC) + self.clock_offset

    def next_stamp(self) -> str:
        """Now, but strictly after every stamp issued so far."""
        moment = max(self.now(), self._last_stamp + dt.timedelta(milliseconds=1))
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        self._last_stamp = moment
        return stamp(moment)

    def mutate(
        self,
        count: int,
        seed: int | None = None,
        *,
        ids: list[str] | None = None,
        backdate_seconds: float = 0,
    ) -> list[str]:
        """Change `count` receivables (or exactly `ids`); return their ids.

        `backdate_seconds` stamps the change that long in the past (replication lag: it
        becomes visible now, stamped earlier), but never before the receivable's last one.
        """
        with self.lock:
            rng = random.Random(seed) if seed is not None else self._rng
            if ids is None:
                ids = rng.sample(sorted(self.records), min(count, len(self.records)))
            for rid in ids:
                record = self.records[rid]
                state = {f: record[f] for f in (*TRACKED, "portal_status")}
                visible = self.next_stamp()
                changed_at = visible
                if backdate_seconds:
                    moment = max(
                        parse_moment(visible) - dt.timedelta(seconds=backdate_seconds),
                        parse_moment(record["updated_at"]) + dt.timedelta(milliseconds=1),
                    )
                    changed_at = min(visible, stamp(moment))
                saved, self._rng = self._rng, rng
                try:
                    entry = self._change(state, record["_portal"], changed_at)
                finally:
                    self._rng = saved
                self._reindex(record, entry["changed_at"])
                record.update(state)
                record["history"].insert(0, entry)
                self._verified_now(record, visible)
            self.version += 1
            return ids

    def verify(self, ids: list[str]) -> None:
        """Kapwork checked these receivables and found no change: only `_verified_at` moves."""
        with self.lock:
            for rid in ids:
                self._verified_now(self.records[rid], self.next_stamp())
            self.version += 1

    def insert(self, count: int) -> list[str]:
        with self.lock:
            ids = []
            for _ in range(count):
                record = self._generate()
                now = self.next_stamp()
                record["history"] = []
                record["detected_at"] = record["updated_at"] = record["_verified_at"] = now
                record["receivable_date"] = now[:10]
                self.records[record["id"]] = record
                bisect.insort(self._index, (now, record["id"]))
                if self._verified is not None:
                    bisect.insort(self._verified, (now, record["id"]))
                ids.append(record["id"])
            self.version += 1
            return ids

    def _reindex(self, record: dict, updated_at: str) -> None:
        _move(self._index, (record["updated_at"], record["id"]), updated_at)
        record["updated_at"] = updated_at

    def set_raw(self, rid: str, **fields: t.Any) -> None:
        """Overwrite fields exactly as given, for values the docs do not promise (a
        fraction in amount_cents, a null updated_at, a malformed history). The listing
        keeps finding the receivable where it was."""
        with self.lock:
            self.records[rid].update(copy.deepcopy(fields))
            self._verified = None  # built again from the records at its next use
            self.version += 1

    # queries ------------------------------------------------------------------------

    def select(
        self, since: str | None, filters: dict[str, str], order: str, field: str = "updated_at"
    ) -> tuple[str, ...]:
        """Ids of receivables whose `field` (updated_at or verified_at) is at or after
        `since` and that pass the filters, in that field's order (or `order`).

        One listing is read page after page with the same arguments: its ids are kept
        (per `version`, which every change bumps) so that pages 2..N slice them instead
        of passing over every receivable again. After a change the next page selects
        afresh, and rows shift as they would on the real API."""
        key = (since, tuple(sorted(filters.items())), order, field)
        with self.lock:
            if self._listings_version != self.version:
                self._listings.clear()
                self._listings_version = self.version
            ids = self._listings.get(key)
            if ids is None:
                ids = self._select(since, filters, order, field)
                if len(self._listings) >= LISTINGS_KEPT:
                    del self._listings[next(iter(self._listings))]  # the oldest
                self._listings[key] = ids
            return ids

    def _select(
        self, since: str | None, filters: dict[str, str], order: str, field: str
    ) -> tuple[str, ...]:
        index = self._verified_index() if field == "verified_at" else self._index
        start = bisect.bisect_left(index, (since, "")) if since else 0
        entries = index[start:]
        if filters:
            vendor, debtor, status = (filters.get(k) for k in ("vendor_id", "debtor_id", "status"))
            records = self.records
            entries = [
                e
                for e in entries
                if (vendor is None or records[e[1]]["vendor"]["id"] == vendor)
                and (debtor is None or records[e[1]]["debtor"]["id"] == debtor)
                and (status is None or records[e[1]]["status"] == status)
            ]
        ids = [rid for _, rid in entries]
        if order == "updated_at_desc":
            ids.reverse()
        elif order == "id":
            ids.sort()
        return tuple(ids)

    def _verified_index(self) -> list[tuple[str, str]]:
        """(verified_at, id), sorted: built at its first use, then kept up to date."""
        if self._verified is None:
            self._verified = sorted((r["_verified_at"], rid) for rid, r in self.records.items())
        return self._verified

    def _verified_now(self, record: dict, verified_at: str) -> None:
        if self._verified is not None:
            _move(self._verified, (record["_verified_at"], record["id"]), verified_at)
        record["_verified_at"] = verified_at

    def render(self, rid: str, *, history: int | None, metadata: bool) -> dict | None:
        """The receivable as the API shows it; history limited to `history` entries."""
        with self.lock:
            record = self.records.get(rid)
            if record is None:
                return None
            out = {
                k: v
                for k, v in record.items()
                if k not in ("history", "metadata") and not k.startswith("_")
            }
            if history is not None:
                out["history"] = record["history"][:history]
            if metadata:
                out["metadata"] = record["metadata"]
            return out

    def truth(self) -> list[dict]:
        with self.lock:
            return [
                {k: v for k, v in copy.deepcopy(r).items() if not k.startswith("_")}
                for _, r in sorted(self.records.items())
            ]


def _move(index: list[tuple[str, str]], old: tuple[str, str], moment: str) -> None:
    """Move `old` (moment, id) in the sorted `index` to `moment`."""
    position = bisect.bisect_left(index, old)
    if position < len(index) and index[position] == old:
        del index[position]
    bisect.insort(index, (moment, old[1]))


def churn(dataset: Dataset, per_second: float, insert_ratio: float, stop: threading.Event) -> None:
    """Update (and insert) receivables at a steady rate until `stop` is set."""
    rng = random.Random(dataset.seed + 1)
    interval = 1.0 / per_second
    next_at = time.monotonic()
    while not stop.is_set():
        if rng.random() < insert_ratio:
            dataset.insert(1)
        else:
            dataset.mutate(1, seed=rng.getrandbits(32))
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
