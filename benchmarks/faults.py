"""A run under faults: what the retries cost, and proof that nothing went missing.

Starts the sandbox, runs the tap once without faults and once with 10% 5xx, a 20
requests/s rate limit (429 with Retry-After), 2% truncated bodies and 2% dropped
connections, then prints the faults injected, the tap's retry summary, the extra wall
time, and what is missing or extra against the sandbox truth.

    python benchmarks/faults.py --receivables 5000
"""

from __future__ import annotations

import argparse
from collections import Counter

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import emitted_history_rows, expected_history_rows, run_tap

API_KEY = "faults-key-000000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receivables", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument(
        "--history-limit", type=int, default=20, help="low, so gap-fill requests are hit too"
    )
    args = parser.parse_args()

    with Sandbox(receivables=args.receivables, seed=2026, api_key=API_KEY) as sandbox:
        config = {
            "api_key": API_KEY,
            "api_url": sandbox.url,
            "page_size": args.page_size,
            "history_limit": args.history_limit,
        }
        truth = sandbox.truth()
        clean = run_tap(config, check=SystemExit)
        sandbox.set_faults(
            error_rate=0.10,
            rate_limit_rps=20,
            retry_after=1,
            truncate_rate=0.02,
            drop_rate=0.02,
            seed=7,
        )
        sandbox.clear_requests()
        run = run_tap(config, check=SystemExit)
        requests = sandbox.requests

    receivables = {r["id"] for r in run.records("receivables")}
    history = set(emitted_history_rows(run.records("receivable_history")))
    expected = expected_history_rows(truth)
    faults = Counter(r["fault"] for r in requests if r["fault"])
    summary = next((line for line in run.stderr.splitlines() if "HTTP retries:" in line), "none")
    print(f"Sandbox: {args.receivables:,} receivables; {len(requests):,} API requests")
    print(f"faults injected:      {dict(faults)}")
    print(f"tap retry summary:    {summary.split('HTTP retries: ', 1)[-1]}")
    print(f"wall time:            {clean.wall:.1f} s without faults, {run.wall:.1f} s with them")
    print(f"extra time:           {run.wall - clean.wall:.1f} s")
    missing = [r["id"] for r in truth if r["id"] not in receivables]
    print(f"missing receivables:  {len(missing)} of {len(truth):,}")
    print(f"missing history rows: {len(expected - history)} of {len(expected):,}")
    print(f"extra history rows:   {len(history - expected)}")


if __name__ == "__main__":
    main()
