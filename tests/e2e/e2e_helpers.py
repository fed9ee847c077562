"""Helpers for the end-to-end tests: the loaders Meltano installed, and pipes into them."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import run_tap

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / ".meltano" / "loaders"
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"


# The plugins `meltano install` put in the project's .meltano/, shared read-only.
PLUGIN_TYPES = ("extractors", "loaders", "utilities", "mappers", "transformers")


def meltano(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the pinned Meltano in `cwd`; fails the test on a non-zero exit.

    In the repository's project, each call gets a .meltano/ of its own (MELTANO_SYS_DIR_ROOT)
    whose plugin folders link to the installed ones: two `meltano run` at once (pytest-xdist)
    would otherwise share .meltano/run/tap-kapwork/state.json and tap.properties.json. State
    lives in the system database, which each test names (MELTANO_DATABASE_URI).
    """
    if not MELTANO.exists():
        pytest.fail(f"{MELTANO} is missing: run `make test`, which installs Meltano.")
    with tempfile.TemporaryDirectory(prefix="meltano-sys-") as sys_dir:
        if cwd == ROOT:
            assert "MELTANO_DATABASE_URI" in env, "name a system database of the test's own"
            for kind in PLUGIN_TYPES:
                if (ROOT / ".meltano" / kind).is_dir():
                    Path(sys_dir, kind).symlink_to(ROOT / ".meltano" / kind)
            env = {**env, "MELTANO_SYS_DIR_ROOT": sys_dir}
        proc = subprocess.run(
            [str(MELTANO), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def loader(name: str) -> str:
    """The executable `meltano install` put in the loader's own virtualenv."""
    path = PLUGINS / name / "venv" / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make test` (it runs `meltano install`) first.")
    return str(path)


def pipe(config: dict, target: str, target_config: Path, state: dict | None = None) -> dict:
    """tap-kapwork | target: returns the tap's last STATE; fails on any non-zero exit."""
    run = run_tap(config, state=state)
    proc = subprocess.run(
        [target, "--config", str(target_config)],
        input=run.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run.state is not None
    return run.state


def conninfo(postgres: dict) -> str:
    """A libpq connection string for the `postgres` fixture's settings."""
    params = {**postgres, "dbname": postgres["database"]}
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "database" and v != "")
