"""Benchmark: the fixed cost of a discovery run per `meltano run`, editable against package.

Two copies of the project run `meltano run tap-kapwork target-jsonl` against one sandbox:
one with the tap installed as `meltano.yml` ships it (`pip_url: .`, a package: Meltano
caches its catalog), one with `pip_url: -e <repository>` (editable: Meltano runs the tap
with `--discover` before every run). After a first (full) run each, `--rounds` rounds of
incremental runs in ABBA order; it prints each one's median and best wall time and how
many discovery runs Meltano logged.

    .venv/bin/python benchmarks/catalog_cache.py --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from kapwork_sandbox.testing import SandboxProcess, meltano_project

ROOT = Path(__file__).resolve().parents[1]
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
API_KEY = "bench-key-000000"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivables", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if not MELTANO.exists():
        raise SystemExit(f"{MELTANO} is missing: run `make meltano` first.")
    sandbox = SandboxProcess(
        *("--receivables", str(args.receivables), "--api-key", API_KEY, "--profile", "realistic")
    )
    try:
        with tempfile.TemporaryDirectory(prefix="kapwork-catalog-cache-") as tmp:
            projects = {
                "package (pip_url: .)": meltano_project(
                    ROOT, Path(tmp) / "package", ("extractors/tap-kapwork", "loaders/target-jsonl")
                ),
                "editable (pip_url: -e)": meltano_project(
                    ROOT, Path(tmp) / "editable", ("loaders/target-jsonl",)
                ),
            }
            editable = projects["editable (pip_url: -e)"]
            yml = editable / "meltano.yml"
            yml.write_text(yml.read_text().replace("pip_url: .\n", f"pip_url: -e {ROOT}\n", 1))
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))},
                "MELTANO_ENVIRONMENT": "dev",
                "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
                "TAP_KAPWORK_API_URL": sandbox.url,
                "TAP_KAPWORK_API_KEY": API_KEY,
            }
            print("Installing the editable tap into its copy ...", flush=True)
            subprocess.run(
                [str(MELTANO), "install", "extractor", "tap-kapwork"],
                cwd=editable,
                env=env,
                capture_output=True,
                check=True,
            )

            def run(name: str) -> tuple[float, int]:
                project = projects[name]
                (project / "out").mkdir(exist_ok=True)
                started = time.perf_counter()
                proc = subprocess.run(
                    [str(MELTANO), "run", "tap-kapwork", "target-jsonl"],
                    cwd=project,
                    env={
                        **env,
                        "MELTANO_AUTO_INSTALL": "false",
                        "TARGET_JSONL_DESTINATION_PATH": str(project / "out"),
                    },
                    capture_output=True,
                    text=True,
                    check=False,
                )
                wall = time.perf_counter() - started
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
                return wall, proc.stderr.count("Running catalog discovery")

            for name in projects:  # the full load, not measured
                run(name)
            results: dict[str, list[tuple[float, int]]] = {name: [] for name in projects}
            names = list(projects)
            for i in range(args.rounds):
                for name in names if i % 2 == 0 else reversed(names):
                    results[name].append(run(name))
    finally:
        sandbox.stop()
    print(
        f"`meltano run tap-kapwork target-jsonl`, incremental, {args.rounds} runs each (ABBA), "
        f"{os.cpu_count()} CPUs shared with other work while measured:"
    )
    for name, runs in results.items():
        walls = [wall for wall, _ in runs]
        print(
            f"  {name:24} median {statistics.median(walls):6.2f} s   best {min(walls):6.2f} s"
            f"   discovery runs: {sum(d for _, d in runs)} of {len(runs)}"
        )


if __name__ == "__main__":
    main()
