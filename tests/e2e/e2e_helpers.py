"""Helpers for the end-to-end tests: the loaders Meltano installed, and pipes into them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import run_tap

from kapwork_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / ".meltano" / "loaders"
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"


def meltano(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the pinned Meltano in `cwd`; fails the test on a non-zero exit."""
    if not MELTANO.exists():
        pytest.fail(f"{MELTANO} is missing: run `make test`, which installs Meltano.")
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


def meltano_env(
    sandbox: Sandbox, tmp_path: Path, environment: str = "dev", **env: str | None
) -> dict[str, str]:
    """The environment of a `meltano run` from a sandbox: this process's, a system database
    of its own, the sandbox's address and key, then `env`; a value None is left out."""
    return {
        k: v
        for k, v in {
            **os.environ,
            "MELTANO_ENVIRONMENT": environment,
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "TAP_KAPWORK_API_URL": sandbox.url,
            "TAP_KAPWORK_API_KEY": sandbox.api_key,
            **env,
        }.items()
        if v is not None
    }


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
