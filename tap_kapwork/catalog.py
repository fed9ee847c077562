"""The catalog a run is given, completed with the properties an older tap did not have.

Meltano caches the catalog of a plugin installed from a package (not `-e`), keyed on its
settings only: after `meltano install` upgrades tap-kapwork, the cached catalog still
describes the older tap's streams. The SDK takes each stream's schema from the catalog,
so a property added since would be missing from the SCHEMA message while records carry
it. Here such a property is kept and declared, and a WARNING names it; a property the
catalog deselects stays out (deselection is metadata, not a missing schema entry).
"""

from __future__ import annotations

import typing as t

from singer_sdk.singerlib import Schema

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from singer_sdk.singerlib import Catalog


def complete_catalog(
    catalog: Catalog, schemas: Mapping[str, dict[str, t.Any]], logger: logging.Logger
) -> None:
    """Add to `catalog`, in place, the properties of `schemas` its streams lack."""
    for stream, schema in schemas.items():
        entry = catalog.get_stream(stream)
        if entry is None:
            continue
        if entry.schema.properties is None:
            entry.schema.properties = {}
        known = entry.schema.properties
        missing = [name for name in schema.get("properties", {}) if name not in known]
        for name in missing:
            known[name] = Schema.from_dict(schema["properties"][name])
        if missing:
            logger.warning(
                "The catalog given for %s has no %s (written by an older tap-kapwork, such "
                "as Meltano's cached catalog after an upgrade): kept and declared. Run "
                "`meltano run --refresh-catalog ...` once to update the cached catalog.",
                stream,
                ", ".join(missing),
            )
