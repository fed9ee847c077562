"""`kapwork-sandbox`: serve the local Kapwork API in the foreground."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import signal
import sys
import threading

from kapwork_sandbox.data import parse_moment
from kapwork_sandbox.portfolio import PROFILES
from kapwork_sandbox.server import DEFAULT_API_KEY, Sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="kapwork-sandbox",
        description="A local Kapwork Partner API with deterministic data, for demos and tests. "
        "Control endpoints under /_sandbox/ (health, truth, digest, mutate, faults, churn, "
        "requests) need no key: keep the sandbox on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--receivables", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="realistic",
        help="realistic: invoices, debtor habits, forward-only lifecycles (the demo's data); "
        "edge: the edge cases the tests use (huge, negative and zero amounts, random jumps)",
    )
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every API request")
    parser.add_argument("--anchor", help="UTC time the generated data ends at (default: this hour)")
    parser.add_argument("--max-history-limit", type=int, help="answer 400 above this history_limit")
    parser.add_argument(
        "--clock-offset-seconds",
        type=float,
        default=0,
        help="run the API's clock this far ahead (or behind, < 0) of this machine's",
    )
    parser.add_argument(
        "--same-instant-share",
        type=float,
        default=0.0,
        help="share of histories with two changes of one field stamped with the same instant",
    )
    parser.add_argument("--allow-remote", action="store_true", help="listen on a non-loopback host")
    args = parser.parse_args(argv)

    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not args.allow_remote:
        parser.error(f"--host {args.host} is not loopback; add --allow-remote to listen there")
    anchor = parse_moment(args.anchor) if args.anchor else None

    sandbox = Sandbox(
        args.receivables,
        args.seed,
        args.api_key,
        args.host,
        args.port,
        anchor,
        clock_offset_seconds=args.clock_offset_seconds,
        profile=args.profile,
        same_instant_share=args.same_instant_share,
    )
    # The data lives until the sandbox stops: the collector need not scan it ever again.
    gc.freeze()
    sandbox.max_history_limit = args.max_history_limit
    if args.latency_ms:
        sandbox.set_faults(latency_ms=args.latency_ms)
    try:
        sandbox.start()
    except OSError as exc:
        parser.exit(
            2, f"kapwork-sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror}\n"
        )
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    print(
        f"Kapwork sandbox listening on {sandbox.url} "
        f"({args.receivables} receivables, seed {args.seed}, {args.profile} profile)",
        flush=True,
    )
    stopping.wait()
    sandbox.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
