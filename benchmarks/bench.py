"""Benchmark: tap-kapwork against a hand-written sequential loop, side by side.

Starts the sandbox with N receivables and a per-request latency, then runs, in the
same sandbox and one after the other, the hand-written loop (benchmarks/handwritten.py)
and the tap, each writing to a file. Prints wall time, CPU seconds, rows per second
and peak RSS for each, the ratios tap/loop, and checks that both wrote exactly the
sandbox's truth. Each size on each `--profile`: `realistic` (what users have) first,
`edge` (long histories: what the tap/loop targets were defined on).

    python benchmarks/bench.py --receivables 10000 --latency-ms 25
    python benchmarks/bench.py --receivables 10000 100000 --latency-ms 25   # RSS flatness too
    python benchmarks/bench.py --receivables 1000000 --profile realistic --no-loop  # the tap's RSS
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import typing as t
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kapwork_sandbox.testing import SandboxProcess, digest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
API_KEY = "bench-key-000000"


@dataclass
class Result:
    name: str
    wall: float
    cpu: float
    peak_rss_mb: float
    rows: int
    receivables: set[tuple]  # (id, updated_at)
    history: set[tuple]  # (receivable_id, changed_at, field)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall


def start_sandbox(receivables: int, latency_ms: int, seed: int, profile: str) -> SandboxProcess:
    try:
        return SandboxProcess(
            *("--receivables", str(receivables), "--seed", str(seed), "--api-key", API_KEY),
            *("--latency-ms", str(latency_ms), "--profile", profile),
        )
    except RuntimeError as error:
        raise SystemExit(str(error)) from None


def truth(sandbox: SandboxProcess) -> dict[str, t.Any]:
    """The sandbox's digest of what the tap must emit (kapwork_sandbox.testing.truth_digest)."""
    with urllib.request.urlopen(sandbox.url + "/_sandbox/digest", timeout=600) as response:
        return t.cast("dict[str, t.Any]", json.loads(response.read()))


# Peak RSS comes from wait4() in a small wrapper process, not in this one: on Linux a
# child's ru_maxrss starts from its parent's resident size at fork, and by the time the
# tap runs this process holds the loop's parsed output (hundreds of MB at 100k).
MEASURE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
               "maxrss_kb": usage.ru_maxrss, "exit": os.waitstatus_to_exitcode(status)}, out)
"""


def measure(name: str, args: list[str], output: Path) -> Result:
    """Run `args` with stdout to `output`; wall, CPU and peak RSS of that process alone."""
    usage_file = output.with_suffix(".usage.json")
    with output.open("w") as out:
        subprocess.run(
            [sys.executable, "-c", MEASURE, str(usage_file), *args], stdout=out, check=True
        )
    usage = json.loads(usage_file.read_text())
    if usage["exit"] != 0:
        raise SystemExit(f"{name} failed with exit code {usage['exit']}")
    receivables: set[str] = set()
    history: set[tuple] = set()
    rows = 0
    with output.open() as lines:
        for line in lines:
            message = json.loads(line)
            if message.get("type") != "RECORD":
                continue
            rows += 1
            record = message["record"]
            if message["stream"] == "receivables":
                receivables.add((record["id"], record["updated_at"]))
            else:
                history.add((record["receivable_id"], record["changed_at"], record["field"]))
    return Result(
        name=name,
        wall=usage["wall"],
        cpu=usage["cpu"],
        peak_rss_mb=usage["maxrss_kb"] / 1024,
        rows=rows,
        receivables=receivables,
        history=history,
    )


def run_size(args: argparse.Namespace, receivables: int, profile: str) -> Result:
    print(
        f"Sandbox: {receivables:,} receivables ({profile} profile), {args.latency_ms} ms "
        "latency per request"
    )
    sandbox = start_sandbox(receivables, args.latency_ms, args.seed, profile)
    url = sandbox.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp, "config.json")
            config.write_text(
                json.dumps(
                    {
                        "api_key": API_KEY,
                        "api_url": url,
                        "page_size": args.page_size,
                        "history_limit": args.history_limit,
                        "max_parallel_requests": args.parallel,
                    }
                )
            )
            loop = (
                None
                if args.no_loop
                else measure(
                    "hand-written loop",
                    [
                        sys.executable,
                        str(HERE / "handwritten.py"),
                        "--url",
                        url,
                        "--api-key",
                        API_KEY,
                        "--page-size",
                        str(args.page_size),
                        "--history-limit",
                        str(args.history_limit),
                    ],
                    Path(tmp, "loop.jsonl"),
                )
            )
            tap = measure(
                "tap-kapwork",
                [str(BIN / "tap-kapwork"), "--config", str(config)],
                Path(tmp, "tap.jsonl"),
            )
            expected = truth(sandbox)
    finally:
        sandbox.stop()
    report(loop, tap, expected)
    return tap


def report(loop: Result | None, tap: Result, expected: dict[str, t.Any]) -> None:
    same = all(
        digest(r.receivables, r.history) == expected["rows"] for r in (loop, tap) if r is not None
    )
    print()
    header = ("wall s", "CPU s", "rows", "rows/s", "CPU µs/row", "peak RSS MB")
    print(
        f"{'':20} {header[0]:>8} {header[1]:>8} {header[2]:>9} {header[3]:>9} "
        f"{header[4]:>11} {header[5]:>12}"
    )
    for r in (loop, tap):
        if r is None:
            continue
        print(
            f"{r.name:20} {r.wall:8.2f} {r.cpu:8.2f} {r.rows:9,} {r.rows_per_second:9,.0f} "
            f"{r.cpu / r.rows * 1e6:11.1f} {r.peak_rss_mb:12.1f}"
        )
    print()
    if loop is not None:
        print(f"tap/loop wall time:    {tap.wall / loop.wall:.2f}  (target <= 0.5)")
        cpu = (tap.cpu / tap.rows) / (loop.cpu / loop.rows)
        print(f"tap/loop CPU per row:  {cpu:.2f}  (target <= 2)")
    print(f"tap peak RSS:          {tap.peak_rss_mb:.0f} MB  (target <= 150)")
    print(
        f"= sandbox truth:       {'yes' if same else 'NO'} ({len(tap.receivables):,} "
        f"receivables, {len(tap.history):,} history changes)"
    )
    print()
    if not same:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--receivables", type=int, nargs="+", default=[10_000], help="one or more sizes"
    )
    parser.add_argument("--latency-ms", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--history-limit", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4, help="the tap's max_parallel_requests")
    parser.add_argument(
        "--profile",
        nargs="+",
        choices=("realistic", "edge"),
        default=["realistic", "edge"],
        help="the sandbox's data, one run per profile (default: both, realistic first)",
    )
    parser.add_argument("--no-loop", action="store_true", help="the tap alone (large sizes)")
    args = parser.parse_args()

    for profile in args.profile:
        taps = [(size, run_size(args, size, profile)) for size in args.receivables]
        if len(taps) > 1:
            sizes = ", ".join(f"{n:,}: {r.peak_rss_mb:.0f} MB" for n, r in taps)
            print(f"tap peak RSS by size ({profile}):  {sizes}")
            growth = taps[-1][1].peak_rss_mb / taps[0][1].peak_rss_mb
            print(f"RSS growth {taps[0][0]:,} -> {taps[-1][0]:,}: x{growth:.2f}  (target: flat)")
            print()


if __name__ == "__main__":
    main()
