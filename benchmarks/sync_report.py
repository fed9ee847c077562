"""Two syncs against the sandbox, with the figures the core tap promises.

Run 1 is a full sync; then the sandbox updates and inserts receivables, and run 2 starts
from run 1's last STATE. For each run: receivables and history rows emitted (and whether
they equal the sandbox truth), requests per 1,000 receivables, the largest STATE in
bytes, and SCHEMA messages per stream.

    python benchmarks/sync_report.py --receivables 5000
    python benchmarks/sync_report.py --receivables 5000 --history-limit 20   # gap-fill
"""

from __future__ import annotations

import argparse
from collections import Counter

from tap_runner import run_tap

from kapwork_sandbox import Sandbox

API_KEY = "report-key-000000"


def changes(truth: list[dict]) -> set[tuple]:
    return {
        (r["id"], entry["changed_at"], field)
        for r in truth
        for entry in r["history"]
        for field in entry["changes"]
    }


def report(label: str, sandbox: Sandbox, run: tuple, receivables: set, history: set) -> None:
    _, messages, _, state_lines = run
    records = [m for m in messages if m["type"] == "RECORD"]
    got_receivables = {m["record"]["id"] for m in records if m["stream"] == "receivables"}
    got_history = [
        (m["record"]["receivable_id"], m["record"]["changed_at"], m["record"]["field"])
        for m in records
        if m["stream"] == "receivable_history"
    ]
    requests = sandbox.requests
    lists = sum(1 for r in requests if r["path"] == "/v1/receivables")
    total = len(sandbox.dataset.records)
    schemas = Counter(m["stream"] for m in messages if m["type"] == "SCHEMA")
    print(f"{label}")
    print(
        f"  emitted: {len(got_receivables):,} receivables, {len(got_history):,} history rows; "
        f"equal to the truth: {got_receivables == receivables and set(got_history) == history}"
        f" (history rows emitted twice: {len(got_history) - len(set(got_history))})"
    )
    print(
        f"  requests: {len(requests):,} ({lists} list pages, {len(requests) - lists} single) = "
        f"{len(requests) / total * 1000:.2f} per 1,000 receivables"
    )
    print(f"  largest STATE: {max(len(line.encode()) for line in state_lines)} bytes")
    print(f"  SCHEMA messages per stream: {dict(schemas)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receivables", type=int, default=5000)
    parser.add_argument("--history-limit", type=int, default=100)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--inserts", type=int, default=20)
    args = parser.parse_args()

    with Sandbox(receivables=args.receivables, seed=2026, api_key=API_KEY) as sandbox:
        config = {"api_key": API_KEY, "api_url": sandbox.url, "history_limit": args.history_limit}
        truth = sandbox.truth()
        first = run_tap(config)
        report("Run 1 (full sync)", sandbox, first, {r["id"] for r in truth}, changes(truth))

        changed = set(sandbox.mutate(args.updates)) | set(sandbox.insert(args.inserts))
        new_changes = changes(sandbox.truth()) - changes(truth)
        state = next(m["value"] for m in reversed(first[1]) if m["type"] == "STATE")
        sandbox.clear_requests()
        second = run_tap(config, state=state)
        report(
            f"Run 2 (after {args.updates} updates and {args.inserts} inserts, from run 1's STATE)",
            sandbox,
            second,
            changed,
            new_changes,
        )


if __name__ == "__main__":
    main()
