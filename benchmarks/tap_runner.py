"""Run `tap-kapwork` as a user would, for the scripts in this folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAP = str(Path(sys.executable).with_name("tap-kapwork"))


def run_tap(config: dict, state: dict | None = None) -> tuple[float, list[dict], str, list[str]]:
    """(wall seconds, Singer messages, stderr, raw STATE lines); exits if the tap fails."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [TAP, "--config", str(_write(tmp, "config.json", config))]
        if state is not None:
            args += ["--state", str(_write(tmp, "state.json", state))]
        started = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"tap-kapwork failed:\n{proc.stderr[-2000:]}")
    lines = proc.stdout.splitlines()
    state_lines = [line for line in lines if '"type":"STATE"' in line]
    return wall, [json.loads(line) for line in lines], proc.stderr, state_lines


def _write(directory: str, name: str, content: dict) -> Path:
    path = Path(directory, name)
    path.write_text(json.dumps(content))
    return path
