"""Test markers assigned automatically, so that tests added later get them too.

- e2e: everything under tests/e2e (Meltano, the installed loaders, PostgreSQL, a wheel).
- sandbox: a test that talks to a local kapwork_sandbox: it uses a fixture named
  *sandbox*, or it, one of its fixtures or its module starts a Sandbox (in-process or the
  `kapwork-sandbox` command).
- unit: the rest. `make unit` runs these.

Registered in pyproject.toml (`--strict-markers`); a marker set by hand is kept.
"""

from __future__ import annotations

import functools
import inspect
import typing as t
from pathlib import Path

import pytest

from kapwork_sandbox import Sandbox

E2E = Path(__file__).resolve().parent / "e2e"
KINDS = ("unit", "sandbox", "e2e")
# How a test's code shows that it starts a sandbox.
STARTS_A_SANDBOX = (
    "Sandbox(",
    "SandboxProcess(",
    "SANDBOX_CLI",
    "kapwork-sandbox",
    "kapwork_sandbox.cli",
)


@functools.cache
def _mentions_a_sandbox(function: t.Callable[..., t.Any]) -> bool:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return any(word in source for word in STARTS_A_SANDBOX)


def _fixture_functions(item: pytest.Item) -> list[t.Callable[..., t.Any]]:
    # NB: pytest has no public API for the fixtures an item uses; _fixtureinfo has been
    # stable since pytest 3. Without it, only the fixture names are looked at.
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) or {}
    return [d.func for name, fixturedefs in defs.items() for d in fixturedefs if name != "request"]


def _uses_a_sandbox(item: pytest.Item) -> bool:
    if any("sandbox" in name for name in getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    if module is not None and any(isinstance(v, Sandbox) for v in vars(module).values()):
        return True
    function = getattr(item, "function", None)
    functions = [function] if function is not None else []
    return any(_mentions_a_sandbox(f) for f in [*functions, *_fixture_functions(item)])


def kind(item: pytest.Item) -> str:
    if E2E in Path(str(item.path)).resolve().parents:
        return "e2e"
    return "sandbox" if _uses_a_sandbox(item) else "unit"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(name) for name in KINDS):
            item.add_marker(kind(item))
