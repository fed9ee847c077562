"""Fields the API sends that the tap does not declare: kept in a catch-all column, and
each named once per run in a WARNING.

NB: the docs list a receivable's fields and a history entry's, but an API adds fields
over time (a payment reference, who made a change, a reason code). Each level the tap
reads has a declared catch-all object column holding every key the tap does not
declare, name -> value exactly as the API sent it:

    a receivable (beside its documented fields)  -> receivables.extra_fields
    a history entry (beside changed_at, changes) -> receivable_history.entry_extra_fields
    one change (beside from, to)                 -> receivable_history.change_extra_fields

A catch-all that is deselected in the catalog keeps nothing, and the WARNING says so by
name: nothing the API sent is dropped without a word.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Iterable


# The catch-all columns, by stream.
RECEIVABLE_EXTRAS = "extra_fields"
ENTRY_EXTRAS = "entry_extra_fields"
CHANGE_EXTRAS = "change_extra_fields"
# The documented keys of a history entry and of one change.
ENTRY_KEYS = frozenset({"changed_at", "changes"})
CHANGE_KEYS = frozenset({"from", "to"})


class CatchAll:
    """The keys of one level of the API's objects that the tap does not declare."""

    def __init__(
        self,
        where: str,
        level: str,
        known: Iterable[str],
        column: str,
        *,
        kept: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        self.where = where  # e.g. "receivables.history[]"
        self.level = level  # e.g. "a key of a history entry"
        self.known = frozenset(known)
        self.column = column  # e.g. "receivable_history.entry_extra_fields"
        self.kept = kept
        self._logger = logger
        self.warned: set[str] = set()

    def __call__(self, value: dict, receivable_id: t.Any) -> dict | None:
        """`value`'s undeclared keys, name -> value as sent; None when there are none
        (or when the catch-all is deselected). Names a new key once, in a WARNING."""
        known = self.known
        extras = {key: item for key, item in value.items() if key not in known}
        if not extras:
            return None
        if not self.warned.issuperset(extras):
            for name in extras:
                if name not in self.warned:
                    self.warned.add(name)
                    if self._logger is not None:
                        self._logger.warning("%s", self.message(name, receivable_id))
        return extras if self.kept else None

    def message(self, name: str, receivable_id: t.Any) -> str:
        seen = (
            f"The API sent {self.where}.{name} ({self.level}), which the tap does not "
            f"declare (first on {receivable_id})"
        )
        if self.kept:
            return f"{seen}: its values are kept in {self.column}.{name}."
        return (
            f"{seen}: its values were NOT kept, because {self.column} is deselected in "
            f"the catalog. Select {self.column} (e.g. `select: [{self.column.split('.')[0]}.*]` "
            "in meltano.yml) to keep them."
        )


class HistoryCatchAlls(t.NamedTuple):
    """The two catch-alls of receivable_history: entry keys, and keys of one change."""

    entry: CatchAll
    change: CatchAll


def history_catch_alls(
    *, entry_kept: bool = True, change_kept: bool = True, logger: logging.Logger | None = None
) -> HistoryCatchAlls:
    return HistoryCatchAlls(
        CatchAll(
            "receivables.history[]",
            "a key of a history entry",
            ENTRY_KEYS,
            f"receivable_history.{ENTRY_EXTRAS}",
            kept=entry_kept,
            logger=logger,
        ),
        CatchAll(
            "receivables.history[].changes.*",
            "a key of one field's change",
            CHANGE_KEYS,
            f"receivable_history.{CHANGE_EXTRAS}",
            kept=change_kept,
            logger=logger,
        ),
    )
