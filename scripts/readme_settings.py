"""Rewrite the README's settings table from `tap-kapwork --about --format=markdown`.

python scripts/readme_settings.py        (or: make readme)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def main() -> None:
    about = subprocess.run(
        [str(Path(sys.executable).with_name("tap-kapwork")), "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    table = "\n".join(line for line in about.splitlines() if line.startswith("|"))
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
