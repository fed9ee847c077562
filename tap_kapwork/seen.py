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

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


class SeenIds:
    """Per receivable id, the newest `updated_at` emitted so far (as an instant).

    Stored as whole microseconds since the epoch in a plain dict: an instant compares
    the same whatever ISO 8601 spelling the API used (`.000Z`, `+00:00`, `-05:00`).
    """

    def __init__(self) -> None:
        self._newest: dict[str, int] = {}

    def newer(self, row_id: str, updated_at: dt.datetime) -> bool:
        """Whether this version of `row_id` is to be emitted: True, and remembered, when
        the id is new or `updated_at` (an aware datetime) is later than the version
        emitted before; False for an older or an identical one."""
        moment = (updated_at - _EPOCH) // _MICROSECOND
        known = self._newest.get(row_id)
        if known is not None and moment <= known:
            return False
        self._newest[row_id] = moment
        return True

    def __len__(self) -> int:
        """How many distinct ids were seen."""
        return len(self._newest)
