"""Which version of each receivable a listing has emitted: the newest one wins.

NB: the API was seen to list one receivable twice in one run, the older version first
(on one page, or on two: a stale replica, an offset page over rows that moved). Keeping
the first version and dropping "an id already seen" loses the newer version and the
history change that made it. `SeenIds` remembers, per id, the `updated_at` of the
version emitted last, so that a newer version is emitted after it and an older (or the
same) one is not emitted again.

The interface is deliberately small (`newer`, `len`) so that the storage can change:
a listing may hold a million receivables, and this memory must not hold whole rows.
"""

from __future__ import annotations

import datetime as dt
from array import array

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)
_KEY = 16  # bytes of a documented id: 32 hex digits
_SPREAD = 1 << 13  # buckets per prefix: ~110 ids each at a million
_PREFIXES = {"rcv_": 0, "rec_": _SPREAD}  # the documented forms (README: both exist)


class SeenIds:
    """Per receivable id, the newest `updated_at` emitted so far (as an instant).

    Stored as whole microseconds since the epoch: an instant compares the same whatever
    ISO 8601 spelling the API used (`.000Z`, `+00:00`, `-05:00`).

    A dict of a million id strings and their instants held ~150 MB, the one part of the
    tap's memory that grew with the portfolio. Ids of the documented form (`rcv_` or
    `rec_` and 32 lowercase hex digits) are kept as their 16 bytes instead, appended to
    one of 16,384 buckets (by prefix and last bytes), their instant in an array beside
    them: 24 bytes an id, and exact: a lookup compares the whole 16 bytes, never a hash
    that could make two ids one and drop a row. Any other id is kept as it is.
    """

    def __init__(self) -> None:
        self._keys = [bytearray() for _ in range(2 * _SPREAD)]
        self._moments = [array("q") for _ in range(2 * _SPREAD)]
        self._packed = 0
        self._other: dict[str, int] = {}

    def newer(self, row_id: str, updated_at: dt.datetime) -> bool:
        """Whether this version of `row_id` is to be emitted: True, and remembered, when
        the id is new or `updated_at` (an aware datetime) is later than the version
        emitted before; False for an older or an identical one."""
        moment = (updated_at - _EPOCH) // _MICROSECOND
        key = _packed(row_id)
        if key is None:
            known = self._other.get(row_id)
            if known is not None and moment <= known:
                return False
            self._other[row_id] = moment
            return True
        bucket = _PREFIXES[row_id[:4]] + ((key[14] << 8 | key[15]) & (_SPREAD - 1))
        keys, moments = self._keys[bucket], self._moments[bucket]
        position = keys.find(key)
        while position > 0 and position % _KEY:  # the end of one key and the start of the next
            position = keys.find(key, position + 1)
        if position < 0:
            keys += key
            moments.append(moment)
            self._packed += 1
            return True
        if moment <= moments[position // _KEY]:
            return False
        moments[position // _KEY] = moment
        return True

    def __len__(self) -> int:
        """How many distinct ids were seen."""
        return self._packed + len(self._other)


def _packed(row_id: str) -> bytes | None:
    """The 16 bytes of an id of the documented form; None for any other id."""
    digits = row_id[4:]
    if len(digits) != 2 * _KEY or row_id[:4] not in _PREFIXES:
        return None
    # Lowercase only, so that one key is one id (fromhex also reads "AB" and "a b").
    if not (digits.islower() or digits.isdigit()):
        return None
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        return None
    return key if len(key) == _KEY else None
