"""Pinned virtualenvs for the loaders the targets table measures that meltano.yml lacks.

Each is made once, from the package index, under .venv-loaders/NAME-VERSION (gitignored)
and kept: a second `make test` finds it and installs nothing. A lock file keeps two
pytest-xdist workers from making the same one at once.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venv-loaders"


def loader_venv(package: str, version: str, executable: str) -> str:
    """The `executable` of `package==version` in its own virtualenv, made when missing."""
    venv = VENVS / f"{package}-{version}"
    program = venv / "bin" / executable
    VENVS.mkdir(exist_ok=True)
    with (VENVS / f"{package}-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".installed").exists() and program.exists():
            return str(program)
        shutil.rmtree(venv, ignore_errors=True)
        steps = (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{package}=={version}"],
        )
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.fail(f"could not install {package}=={version}:\n{proc.stderr[-3000:]}")
        (venv / ".installed").touch()
    return str(program)
