"""Receivable history: completing truncated histories and turning them into rows.

List pages carry at most `history_limit` entries per receivable. When a receivable's
embedded history is full and its oldest entry is not older than this run's bound,
older changes may be missing: we ask the single-receivable endpoint for larger limits
until the history reaches the bound or ends. The bound (`since`) is inclusive, and the
same instant decides both which changes are emitted and whether a history is truncated.
"""

from __future__ import annotations

import hashlib
import json
import threading
import typing as t
from urllib.parse import quote

import msgspec

from tap_kapwork.errors import BadRequestError, KapworkError, NotFoundError
from tap_kapwork.records import SchemaViolationError, is_date_time
from tap_kapwork.timestamps import parse_timestamp, utc_date_time
from tap_kapwork.undeclared import CHANGE_EXTRAS, ENTRY_EXTRAS, HistoryCatchAlls, history_catch_alls

if t.TYPE_CHECKING:
    import datetime as dt
    import logging
    from collections.abc import Callable, Iterator

# How much larger each single-receivable request asks for than the last one.
GROWTH = 4
# The API's documented default history_limit: the floor when it rejects larger ones.
API_DEFAULT_HISTORY_LIMIT = 10


def oldest_change(history: list[dict]) -> dt.datetime:
    # Documented as newest first; the minimum does not depend on that.
    return min(parse_timestamp(entry["changed_at"]) for entry in history)


def is_truncated(history: list[dict], limit: int, since: dt.datetime | None) -> bool:
    """True when `history` (asked with `limit`) may hide changes at or after `since`."""
    if len(history) < limit:
        return False
    # At the bound itself there may be more entries of the same instant: ask.
    return since is None or oldest_change(history) >= since


def history_since(
    receivable: dict, since: dt.datetime | None, updated_at: dt.datetime
) -> dt.datetime | None:
    """The inclusive bound for one receivable's history rows.

    NB: the list filter is called `verified_since`, and the API may filter on when
    Kapwork last verified a receivable rather than on `updated_at`. A receivable it
    returns although its `updated_at` is older than `since` still gets its newest
    change(s) emitted (every entry at its newest `changed_at`): the tap never drops
    what the API returned because of its own bound.
    """
    if since is None or updated_at >= since:
        return since
    stamps = [parse_timestamp(e["changed_at"]) for e in receivable.get("history") or []]
    return min(updated_at, max(stamps)) if stamps else updated_at


class HistoryLimits:
    """The one place that decides which history_limit to ask, for the list and single
    endpoints alike, shared by all threads.

    The docs give no maximum for history_limit. The rule: grow by GROWTH while the API
    accepts; once it rejected a value (400), try the midpoint between the largest value
    it accepted (at least its documented default, 10) and the smallest it rejected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected: int | None = None

    def next_after(self, limit: int) -> int | None:
        """The next limit to try once `limit` came back full, or None at the ceiling."""
        with self._lock:
            candidate = max(limit * GROWTH, 100)
            if self.rejected is not None:
                candidate = min(candidate, (max(self.accepted, limit) + self.rejected) // 2)
            return candidate if candidate > limit else None

    def accept(self, limit: int) -> None:
        with self._lock:
            self.accepted = max(self.accepted, limit)

    def reject(self, limit: int) -> int | None:
        """Record a 400 for `limit`; the value to try instead, or None if none is left."""
        with self._lock:
            self.rejected = limit if self.rejected is None else min(self.rejected, limit)
            floor = max(self.accepted, API_DEFAULT_HISTORY_LIMIT)
            if floor >= self.rejected:
                return None
            return max(floor, (floor + self.rejected) // 2)


class HistoryCompleter:
    """Makes each receivable's `history` complete back to this run's bound."""

    def __init__(
        self,
        get_json: Callable[[str, dict[str, t.Any]], dict[str, t.Any]],
        path: str,
        logger: logging.Logger,
        limits: HistoryLimits,
    ) -> None:
        self._get_json = get_json
        self._path = path
        self._logger = logger
        self.limits = limits
        self._lock = threading.Lock()
        self.requests = 0

    def complete(self, receivable: dict, limit: int, since: dt.datetime | None) -> None:
        """Replace `receivable["history"]` (asked with `limit`) by one reaching `since`."""
        history = receivable.get("history") or []
        while is_truncated(history, limit, since):
            next_limit = self.limits.next_after(limit)
            if next_limit is None:
                self._logger.warning(
                    "Receivable %s has more than %d changes since %s, the most the API "
                    "returns; older changes are not available.",
                    receivable["id"],
                    limit,
                    since.isoformat() if since else "its detection",
                )
                break
            fetched = self._fetch(receivable["id"], next_limit)
            if fetched is None:
                break
            if fetched is False:  # rejected: `limits` now steers the next try lower
                continue
            limit, history = next_limit, fetched
        receivable["history"] = history

    def _fetch(self, receivable_id: str, limit: int) -> list[dict] | t.Literal[False] | None:
        """History from the single endpoint; False if `limit` was rejected, None if gone."""
        with self._lock:
            self.requests += 1
        try:
            body = self._get_json(
                f"{self._path}/{quote(receivable_id, safe='')}", {"history_limit": limit}
            )
        except NotFoundError:
            self._logger.warning(
                "Receivable %s disappeared (404) while its history was being completed; "
                "keeping the entries from the list page.",
                receivable_id,
            )
            return None
        except BadRequestError as exc:
            if exc.param not in (None, "history_limit"):
                raise
            self.limits.reject(limit)
            return False
        self.limits.accept(limit)
        history = body.get("history")
        if not isinstance(history, list):
            raise KapworkError(
                f"GET {self._path}/{{id}} returned no 'history' list for {receivable_id}; "
                "the API response does not match the documented receivable object."
            )
        return history


def history_rows(
    receivable_id: str,
    history: list[dict],
    since: dt.datetime | None,
    catch_alls: HistoryCatchAlls | None = None,
) -> Iterator[dict[str, t.Any]]:
    """One row per changed field per history entry at or after `since` (inclusive).

    Every row validates against the stream's schema (see records.py): `changed_at` is
    an RFC 3339 date-time, emitted in UTC with `Z` (`utc_date_time`), or the run stops;
    values are plain (`plain_value`), date-times among them kept as the API wrote them.
    Keys of an entry or a change beyond the documented ones go to `catch_alls` (see
    undeclared.py; by default kept without a warning).
    """
    # The hot path of a full sync (a row per changed field): names bound locally, and the
    # hash of a change seen before (most status moves) looked up, not recomputed.
    hashes, canonical, plain = _hashes, _canonical, PLAIN
    entry_extras, change_extras = catch_alls or history_catch_alls()
    for entry in history:
        if type(entry) is dict:
            changes, changed_at = entry.get("changes"), entry.get("changed_at")
        else:
            changes = changed_at = None
        if type(changes) is not dict or type(changed_at) is not str:
            raise KapworkError(
                f"Receivable {receivable_id} has a history entry without 'changed_at' and "
                "'changes'; the API response does not match the documented history object."
            )
        # The key's changed_at is in UTC with Z: the same row whatever offset the API used.
        utc = utc_date_time(changed_at) if is_date_time(changed_at) else None
        if utc is None:
            raise SchemaViolationError(
                f"Receivable {receivable_id} has a history entry with changed_at "
                f"{changed_at[:40]!r}, which is not an ISO 8601 date-time with a time zone; "
                "the API response does not match the documented history object. Ask "
                "Kapwork to correct it, or deselect receivable_history."
            )
        changed_at = utc
        if since is not None and parse_timestamp(changed_at) < since:
            continue
        # Undeclared keys are rare: only an entry or a change with other keys than the
        # documented two goes to its catch-all (undeclared.py).
        entry_extra = entry_extras(entry, receivable_id) if len(entry) != 2 else None
        for field, change in changes.items():
            change_extra = None
            if type(change) is dict:
                before, after = change.get("from"), change.get("to")
                if len(change) != 2 or "to" not in change or "from" not in change:
                    change_extra = change_extras(change, receivable_id)
            else:
                before, after = None, change
            if type(before) not in plain:
                before = plain_value(before)
            if type(after) not in plain:
                after = plain_value(after)
            text = canonical((before, after))
            digest = hashes.get(text)
            if digest is None:
                digest = _hash_of(text)
            row = {
                "receivable_id": receivable_id,
                "changed_at": changed_at,
                "field": field,
                "change_hash": digest,
                "from_value": before,
                "to_value": after,
            }
            if entry_extra is not None:
                row[ENTRY_EXTRAS] = entry_extra
            if change_extra is not None:
                row[CHANGE_EXTRAS] = change_extra
            yield row


PLAIN = frozenset({str, int, bool, type(None)})
# Compact JSON (the values are plain by then: strings, integers, booleans, null).
_canonical = msgspec.json.Encoder().encode
_hashes: dict[bytes, str] = {}


def change_hash(before: t.Any, after: t.Any) -> str:
    """Tells apart changes of one field at one instant (PENDING→APPROVED, APPROVED→PAID).

    The first 16 hex digits of SHA-256 over the compact JSON array
    `[from_value, to_value]` of the row, UTF-8: the same change always gets the same
    hash, so re-emitted rows upsert onto themselves, and anyone can recompute it.
    """
    text = _canonical((before, after))
    digest = _hashes.get(text)
    return digest if digest is not None else _hash_of(text)


def _hash_of(text: bytes) -> str:
    # Many changes repeat (status moves): a bounded cache skips their hashing. Bounded
    # low: a change that does not repeat (a new PO number) is never hit again, and 65,536
    # entries were ~10 MB of the tap's peak RSS at 80,000 receivables (tracemalloc).
    if len(_hashes) >= 1 << 12:
        _hashes.clear()
    digest = _hashes[text] = hashlib.sha256(text).hexdigest()[:16]
    return digest


def plain_value(value: t.Any) -> t.Any:
    """Strings, integers, booleans and null as they are; anything else as JSON text.

    Integral numbers (150000.0) arrive as integers; fractions, objects and arrays as
    their JSON text with keys sorted (`json.dumps`), e.g. "12.5" or '{"a": 1}'.
    """
    if type(value) is float and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
