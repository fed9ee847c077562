"""List answers that are wrong in what they say, not in how they arrive (see faults.py).

- A receivable listed twice: an older version of it (as it was before its newest
  change) besides the current one, on the same page (before or after it) or on another
  page (`repeat_older_version`): a stale replica, an offset page over moving data.
- Pages served empty while `has_more` and `total_count` stay as they were, the first
  N times each is served or always (`empty_pages`).
- Text that is not Unicode inside a string of an otherwise valid answer: a lone UTF-16
  surrogate (`\\ud83d`, half an emoji) or bytes that are not UTF-8 (`bad_text`). These
  act on the encoded bytes: neither can be held in a str that encodes.

`Quirks.encode` is the one point where the server applies them, to list answers only.
"""

from __future__ import annotations

import json
import threading
import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from kapwork_sandbox.data import Dataset

# What `bad_text` puts at the end of the string, as it goes on the wire.
BAD_TEXT = {
    "surrogate": b"\\ud83d",  # the first half of an emoji, escaped, without its second half
    "bytes": b"\xff\xfe",  # never valid in UTF-8
}
_MARKER = "\ue000kapwork-sandbox-bad-text-{}\ue000"  # private use: replaced after encoding


@dataclass(frozen=True)
class Repeat:
    id: str
    page: int | None  # None: on the receivable's own page
    before: bool  # on its own page: before the current version (older first) or after


@dataclass(frozen=True)
class BadText:
    id: str
    field: str  # dotted path in the receivable: vendor.name, history.0.changes.status.to
    kind: str  # a key of BAD_TEXT


class Quirks:
    """Thread-safe; nothing is changed while no quirk is set."""

    def __init__(self, dataset: Dataset) -> None:
        self._dataset = dataset
        self._lock = threading.Lock()
        self.repeats: list[Repeat] = []
        self.empty: dict[int, int | None] = {}  # page -> times it is still empty (None: always)
        self.bad: list[BadText] = []

    def repeat_older_version(
        self, rid: str, *, page: int | None = None, before: bool = True
    ) -> None:
        """List `rid` also as it was before its newest change: on its own page (`before`
        or after the current version), or on page `page` of every list answer."""
        record = self._dataset.render(rid, history=1, metadata=False)
        if record is None or not record.get("history"):
            raise ValueError(f"receivable {rid} does not exist or has no change to undo")
        with self._lock:
            self.repeats.append(Repeat(rid, page, before))

    def empty_pages(self, *pages: int, times: int | None = None) -> None:
        """Serve these pages with `"data": []`, the first `times` times each (None: always)."""
        with self._lock:
            for page in pages:
                self.empty[int(page)] = times

    def bad_text(self, rid: str, field: str = "vendor.name", kind: str = "surrogate") -> None:
        """End the string at `field` of receivable `rid` with text that is not Unicode."""
        if kind not in BAD_TEXT:
            raise ValueError(f"kind is one of {', '.join(BAD_TEXT)}")
        with self._lock:
            self.bad.append(BadText(rid, field, kind))

    def clear(self) -> None:
        with self._lock:
            self.repeats, self.empty, self.bad = [], {}, []

    def configure(self, spec: dict[str, t.Any]) -> dict[str, t.Any]:
        """All quirks from a control request's JSON (`{}` clears them); returns them."""
        self.clear()
        for repeat in spec.get("repeat_older_version", []):
            page = repeat.get("page")
            self.repeat_older_version(
                str(repeat["id"]),
                page=None if page is None else int(page),
                before=bool(repeat.get("before", True)),
            )
        empty = spec.get("empty_pages")
        if empty:
            self.empty_pages(*empty["pages"], times=empty.get("times"))
        for bad in spec.get("bad_text", []):
            self.bad_text(
                str(bad["id"]), bad.get("field", "vendor.name"), bad.get("kind", "surrogate")
            )
        return self.describe()

    def describe(self) -> dict[str, t.Any]:
        with self._lock:
            return {
                "repeat_older_version": [vars(r) for r in self.repeats],
                "empty_pages": {str(page): times for page, times in self.empty.items()},
                "bad_text": [vars(b) for b in self.bad],
            }

    def encode(self, body: dict[str, t.Any], params: dict[str, list[str]]) -> bytes:
        """The list answer `body` as bytes, with the quirks that apply to its page."""
        if not (self.repeats or self.empty or self.bad) or not isinstance(body.get("data"), list):
            return json.dumps(body, ensure_ascii=False).encode()
        page = int(params.get("page", ["1"])[-1])
        expand = params.get("expand[]", []) + params.get("expand", [])
        history = int(params.get("history_limit", ["10"])[-1]) if "history" in expand else None
        data = list(body["data"])
        with self._lock:
            times = self.empty.get(page, 0)
            if page in self.empty and (times is None or times > 0):
                if times is not None:
                    self.empty[page] = times - 1
                data = []
            repeats, bad = list(self.repeats), list(self.bad)
        for repeat in repeats:
            older = self._older(repeat.id, history, "metadata" in expand)
            ids = [row.get("id") for row in data]
            if repeat.page is None and repeat.id in ids:
                at = ids.index(repeat.id)
                data.insert(at if repeat.before else at + 1, older)
            elif repeat.page == page:
                data.append(older)
        markers: dict[str, bytes] = {}
        for number, quirk in enumerate(bad):
            marker = _MARKER.format(number)
            for index, row in enumerate(data):
                if row.get("id") == quirk.id:
                    data[index] = _append(row, quirk.field.split("."), marker)
                    markers[marker] = BAD_TEXT[quirk.kind]
        payload = json.dumps({**body, "data": data}, ensure_ascii=False).encode()
        for marker, bad_bytes in markers.items():
            payload = payload.replace(marker.encode(), bad_bytes)
        return payload

    def _older(self, rid: str, history: int | None, metadata: bool) -> dict[str, t.Any]:
        """`rid` as the API showed it before its newest change."""
        current = self._dataset.render(rid, history=1 << 30, metadata=True)
        assert current is not None
        newest, *rest = current.pop("history")
        older = dict(current)
        for field, change in newest["changes"].items():
            if field in older:
                older[field] = change["from"]
        older["updated_at"] = rest[0]["changed_at"] if rest else current["detected_at"]
        if history is not None:
            older["history"] = rest[:history]
        if not metadata:
            del older["metadata"]
        return older


def _append(value: t.Any, path: list[str], marker: str) -> t.Any:
    """A copy of `value` whose string at `path` ends with `marker` (containers copied)."""
    if not path:
        return (value if isinstance(value, str) else "") + marker
    key, rest = path[0], path[1:]
    if isinstance(value, list):
        copied = list(value)
        copied[int(key)] = _append(copied[int(key)], rest, marker)
        return copied
    if isinstance(value, dict):
        return {**value, key: _append(value.get(key), rest, marker)}
    raise ValueError(f"no field {'.'.join(path)} to put bad text in")
