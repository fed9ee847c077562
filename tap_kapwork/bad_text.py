"""Text that is not Unicode inside an otherwise valid JSON answer: kept, with U+FFFD.

NB: the API was seen to send strings holding a lone UTF-16 surrogate (`"\\ud83d"`, an
emoji cut in half, in a vendor name) and bytes that are not UTF-8. msgspec refuses both
(it decodes only valid Unicode), and no Singer target could load them (a lone surrogate
cannot be written as UTF-8). Retrying does not help: the API answers the same again.

`decode` runs only after msgspec refused an answer: it reads bytes that are not UTF-8
as lone surrogates (Python's "surrogateescape"), lets the standard library's decoder
keep escaped lone surrogates as they are, then replaces every lone surrogate left in a
string (or key) with U+FFFD and names where it was. What is still not JSON raises
ValueError, as before.
"""

from __future__ import annotations

import json
import re
import typing as t

REPLACEMENT = "\ufffd"
_SURROGATES = re.compile("[\ud800-\udfff]")
# Path of a repaired string in the answer: keys and list indexes.
Path = tuple[str | int, ...]


def decode(content: bytes) -> tuple[t.Any, list[Path]]:
    """The JSON value of `content`, and the paths of the strings that were repaired."""
    text = content.decode("utf-8", "surrogateescape")
    value = json.loads(text, parse_constant=_not_json)  # NaN and Infinity are not JSON
    repaired: list[Path] = []
    return _repair(value, (), repaired), repaired


def _not_json(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not JSON")


def _repair(value: t.Any, path: Path, repaired: list[Path]) -> t.Any:
    if isinstance(value, str):
        if _SURROGATES.search(value):
            repaired.append(path)
            return _SURROGATES.sub(REPLACEMENT, value)
        return value
    if isinstance(value, list):
        return [_repair(item, (*path, i), repaired) for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if _SURROGATES.search(key):
                key = _SURROGATES.sub(REPLACEMENT, key)
                repaired.append((*path, key))
            out[key] = _repair(item, (*path, key), repaired)
        return out
    return value


def describe(payload: t.Any, path: Path) -> tuple[str | None, str]:
    """(the receivable's id, the field) of a repaired path: a list answer's rows are
    `data[i]`; a single receivable's answer is the receivable itself."""
    receivable: t.Any = payload
    if len(path) >= 2 and path[0] == "data" and isinstance(path[1], int):
        receivable = payload["data"][path[1]]
        path = path[2:]
    rid = receivable.get("id") if isinstance(receivable, dict) else None
    field = ""
    for part in path:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else part)
    return (rid if isinstance(rid, str) else None), field or "(the whole answer)"
