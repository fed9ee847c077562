"""Two syncs against the sandbox, with the figures the core tap promises.

Run 1 is a full sync; then the sandbox updates and inserts receivables, and run 2 starts
from run 1's last STATE; run 3 follows with no change at all. For each run: receivables
and history rows emitted (and whether they equal the sandbox truth: every change, plus
what the look-back window reads again, `lookback_seconds` before the bookmark), rows
re-emitted by the look-back, requests per 1,000 receivables, the largest STATE in bytes,
and SCHEMA messages per stream.

    python benchmarks/sync_report.py --receivables 5000
    python benchmarks/sync_report.py --receivables 5000 --history-limit 20   # gap-fill
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter

from kapwork_sandbox import Sandbox
from kapwork_sandbox.testing import (
    TapRun,
    changes_since,
    emitted_history_rows,
    expected_history_rows,
    run_tap,
    updated_since,
)
from tap_kapwork.timestamps import parse_timestamp

API_KEY = "report-key-000000"


def window(truth: list[dict], state: dict, lookback: int) -> tuple[set, set]:
    """Receivables and history changes at or after the bookmark minus the look-back."""
    bookmark = state["bookmarks"]["receivables"]["replication_key_value"]
    since = parse_timestamp(bookmark) - dt.timedelta(seconds=lookback)
    return updated_since(truth, since), changes_since(truth, since)


def last_state(run: TapRun) -> dict:
    assert run.state is not None, "the tap wrote no STATE"
    return run.state


def report(
    label: str,
    sandbox: Sandbox,
    run: TapRun,
    receivables: set,
    history: set,
    lookback: tuple[set, set] = (set(), set()),
) -> None:
    got_receivables = {r["id"] for r in run.records("receivables")}
    got_history = emitted_history_rows(run.records("receivable_history"))
    requests = sandbox.requests
    lists = sum(1 for r in requests if r["path"] == "/v1/receivables")
    total = len(sandbox.dataset.records)
    schemas = Counter(m["stream"] for m in run.messages if m["type"] == "SCHEMA")
    print(f"{label}")
    again_receivables, again_history = lookback[0] - receivables, lookback[1] - history
    equal = got_receivables == receivables | again_receivables and set(got_history) == (
        history | again_history
    )
    print(
        f"  emitted: {len(got_receivables):,} receivables, {len(got_history):,} history rows; "
        f"equal to the truth: {equal}"
        f" (history rows emitted twice: {len(got_history) - len(set(got_history))})"
    )
    if lookback[0]:
        print(
            f"  re-emitted by the look-back (unchanged rows in the window): "
            f"{len(again_receivables):,} receivables, {len(again_history):,} history rows"
        )
    print(
        f"  requests: {len(requests):,} ({lists} list pages, {len(requests) - lists} single) = "
        f"{len(requests) / total * 1000:.2f} per 1,000 receivables"
    )
    print(f"  largest STATE: {max(len(line.encode()) for line in run.state_lines)} bytes")
    print(f"  SCHEMA messages per stream: {dict(schemas)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receivables", type=int, default=5000)
    parser.add_argument("--history-limit", type=int, default=100)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--inserts", type=int, default=20)
    parser.add_argument("--lookback-seconds", type=int, default=300)
    args = parser.parse_args()

    with Sandbox(receivables=args.receivables, seed=2026, api_key=API_KEY) as sandbox:
        config = {
            "api_key": API_KEY,
            "api_url": sandbox.url,
            "history_limit": args.history_limit,
            "lookback_seconds": args.lookback_seconds,
        }
        truth = sandbox.truth()
        first = run_tap(config, check=SystemExit)
        report(
            "Run 1 (full sync)",
            sandbox,
            first,
            {r["id"] for r in truth},
            expected_history_rows(truth),
        )

        changed = set(sandbox.mutate(args.updates)) | set(sandbox.insert(args.inserts))
        now = sandbox.truth()
        new_changes = expected_history_rows(now) - expected_history_rows(truth)
        sandbox.clear_requests()
        second = run_tap(config, last_state(first), check=SystemExit)
        report(
            f"Run 2 (after {args.updates} updates and {args.inserts} inserts, from run 1's STATE)",
            sandbox,
            second,
            changed,
            new_changes,
            window(now, last_state(first), args.lookback_seconds),
        )
        sandbox.clear_requests()
        third = run_tap(config, last_state(second), check=SystemExit)
        report(
            "Run 3 (nothing changed, from run 2's STATE: the look-back's cost)",
            sandbox,
            third,
            set(),
            set(),
            window(now, last_state(second), args.lookback_seconds),
        )


if __name__ == "__main__":
    main()
