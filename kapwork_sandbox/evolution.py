"""The API adds fields: keys the docs do not list, on receivables, on history entries and
inside one change, for a share of the receivables or for given ids.

    sandbox.add_fields("receivable")                     # one field of every JSON kind
    sandbox.add_fields("entry", {"changed_by": "string"}, ids=[...])
    sandbox.add_fields("change", {"reason_code": "string"}, share=0.3)
    POST /_sandbox/fields {"level": "change", "fields": {"reason_code": "string"}}
    DELETE /_sandbox/fields                              # the API forgets them again

The fields are added where the server renders an answer (one call in server.py) and to
`Sandbox.truth()`, so tests compare what a client loaded with the truth. The data itself
is not changed (no `updated_at` moves: like a real API that starts sending a field,
unchanged receivables are only read again when they change). Values are deterministic:
the same seed, receivable, entry, change and name always give the same value, of the
JSON kind named for the field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import typing as t
from dataclasses import dataclass

LEVELS = ("receivable", "entry", "change")
KINDS = ("string", "integer", "number", "boolean", "null", "object", "array", "date-time")
# The keys the docs list at each level: a new field must not replace one of them.
DOCUMENTED = {
    "receivable": frozenset(
        {
            "id",
            "object",
            "vendor_receivable_id",
            "vendor",
            "debtor",
            "amount_cents",
            "currency",
            "receivable_date",
            "due_date",
            "status",
            "portal_status",
            "po_number",
            "detected_at",
            "updated_at",
            "estimated_next_update_at",
            "history",
            "metadata",
        }
    ),
    "entry": frozenset({"changed_at", "changes"}),
    "change": frozenset({"from", "to"}),
}
# What `add_fields(level)` adds when no fields are named: one of every kind.
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "receivable": {
        "payment_reference": "string",
        "days_late": "integer",
        "risk_score": "number",
        "auto_matched": "boolean",
        "dispute_reason": "null",
        "remittance": "object",
        "tags": "array",
        "paid_at": "date-time",
    },
    "entry": {
        "changed_by": "string",
        "batch_number": "integer",
        "confidence": "number",
        "automated": "boolean",
        "note": "null",
        "actor": "object",
        "labels": "array",
        "recorded_at": "date-time",
    },
    "change": {
        "reason_code": "string",
        "sequence": "integer",
        "delta": "number",
        "manual": "boolean",
        "comment": "null",
        "reason": "object",
        "sources": "array",
        "effective_at": "date-time",
    },
}
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def value_of(kind: str, key: str) -> t.Any:
    """A deterministic value of JSON kind `kind`, drawn from the text `key`."""
    h = hashlib.sha256(key.encode()).hexdigest()
    number = int(h[:8], 16)
    if kind == "string":
        return f"{h[:4].upper()}-{h[4:12]}" + (" – ü" if number % 5 == 0 else "")  # noqa: RUF001
    if kind == "integer":
        return number % 1_000_000
    if kind == "number":
        return number % 100_000 / 8 + 0.0625  # a fraction that floats hold exactly
    if kind == "boolean":
        return number % 2 == 1
    if kind == "null":
        return None
    if kind == "object":
        return {"id": h[8:16], "count": number % 100, "nested": {"ok": number % 3 == 0}}
    if kind == "array":
        return [h[16:20], number % 1000, None, number % 2 == 0]
    if kind == "date-time":
        moment = _EPOCH + dt.timedelta(seconds=number % 30_000_000)
        if number % 2:  # another offset, kept as the API spelled it
            local = moment.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
            return local.isoformat(timespec="milliseconds")
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


@dataclass(frozen=True)
class NewFields:
    """Fields (name -> kind) the API sends at one level, for a share of receivables or
    for exactly `ids`."""

    level: str
    fields: dict[str, str]
    share: float = 1.0
    ids: frozenset[str] | None = None
    seed: int = 0

    def applies_to(self, receivable_id: str) -> bool:
        if self.ids is not None:
            return receivable_id in self.ids
        if self.share >= 1:
            return True
        digest = hashlib.sha256(f"{self.seed}|{receivable_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.share

    def values(self, *where: str) -> dict[str, t.Any]:
        """The fields' values at one place (receivable id, changed_at, changed field)."""
        place = "|".join((str(self.seed), self.level, *where))
        return {name: value_of(kind, f"{place}|{name}") for name, kind in self.fields.items()}


class Evolution:
    """The fields the API has added so far, applied to its answers and to the truth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: tuple[NewFields, ...] = ()

    def add(
        self,
        level: str,
        fields: t.Mapping[str, str] | None = None,
        *,
        share: float = 1.0,
        ids: t.Iterable[str] | None = None,
        seed: int = 0,
    ) -> NewFields:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        chosen = dict(DEFAULT_FIELDS[level] if fields is None else fields)
        for name, kind in chosen.items():
            if name in DOCUMENTED[level]:
                raise ValueError(f"{name!r} is a documented key of a {level}, not a new field")
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not 0 <= share <= 1:
            raise ValueError("share must be between 0 and 1")
        rule = NewFields(level, chosen, share, None if ids is None else frozenset(ids), seed)
        with self._lock:
            self.rules = (*self.rules, rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules = ()

    def control(self, method: str, body: dict) -> dict:
        """`POST /_sandbox/fields {"level", "fields", "share", "ids", "seed"}` adds fields;
        `DELETE /_sandbox/fields` clears them."""
        if method == "DELETE":
            self.clear()
            return {"ok": True}
        if method != "POST":
            raise ValueError("use POST to add fields, DELETE to clear them")
        rule = self.add(
            str(body.get("level", "receivable")),
            body.get("fields"),
            share=float(body.get("share", 1.0)),
            ids=body.get("ids"),
            seed=int(body.get("seed", 0)),
        )
        return {"level": rule.level, "fields": rule.fields, "share": rule.share}

    def apply(self, body: dict) -> dict:
        """An API answer (a list page or one receivable) with the added fields."""
        rules = self.rules
        if not rules:
            return body
        data = body.get("data")
        if isinstance(data, list):
            return {**body, "data": [self.receivable(r, rules) for r in data]}
        if "id" in body:
            return self.receivable(body, rules)
        return body

    def truth(self, receivables: list[dict]) -> list[dict]:
        rules = self.rules
        return [self.receivable(r, rules) for r in receivables] if rules else receivables

    @staticmethod
    def receivable(record: dict, rules: tuple[NewFields, ...]) -> dict:
        """A copy of `record` with its added fields; stored data is never changed."""
        rid = str(record.get("id"))
        applying = [rule for rule in rules if rule.applies_to(rid)]
        if not applying:
            return record
        out = dict(record)
        history = out.get("history")
        for rule in applying:
            if rule.level == "receivable":
                out.update(rule.values(rid))
            elif isinstance(history, list):
                out["history"] = history = [_entry(e, rule, rid) for e in history]
        return out


def _entry(entry: t.Any, rule: NewFields, rid: str) -> t.Any:
    if not isinstance(entry, dict):
        return entry
    changed_at = str(entry.get("changed_at"))
    if rule.level == "entry":
        return {**entry, **rule.values(rid, changed_at)}
    changes = entry.get("changes")
    if not isinstance(changes, dict):
        return entry
    return {
        **entry,
        "changes": {
            field: {**change, **rule.values(rid, changed_at, field)}
            if isinstance(change, dict)
            else change
            for field, change in changes.items()
        },
    }
