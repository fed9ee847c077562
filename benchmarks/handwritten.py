"""A careful hand-written sequential extractor: the baseline tap-kapwork is measured against.

It produces the same rows as the tap (one RECORD per receivable, one per history change,
histories completed past `history_limit` with the single-receivable endpoint), with a
plain requests + json.dumps loop and no framework.

    python benchmarks/handwritten.py --url http://127.0.0.1:8765 --api-key sandbox-key > out.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

import requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--history-limit", type=int, default=100)
    args = parser.parse_args()

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.api_key}"
    out = sys.stdout
    dumps = json.dumps
    page = 1
    while True:
        response = session.get(
            f"{args.url}/v1/receivables",
            params={
                "verified_since": "all",
                "limit": args.page_size,
                "expand[]": ["history", "metadata"],
                "history_limit": args.history_limit,
                "page": page,
            },
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        for receivable in body["data"]:
            history = receivable.pop("history", None) or []
            limit = args.history_limit
            while len(history) >= limit:
                limit *= 4
                single = session.get(
                    f"{args.url}/v1/receivables/{receivable['id']}",
                    params={"history_limit": limit},
                    timeout=60,
                )
                single.raise_for_status()
                history = single.json()["history"]
            out.write(dumps({"type": "RECORD", "stream": "receivables", "record": receivable}))
            out.write("\n")
            rid = receivable["id"]
            for entry in history:
                changed_at = entry["changed_at"]
                for field, change in entry["changes"].items():
                    row = {
                        "receivable_id": rid,
                        "changed_at": changed_at,
                        "field": field,
                        "from_value": change.get("from"),
                        "to_value": change.get("to"),
                    }
                    out.write(
                        dumps({"type": "RECORD", "stream": "receivable_history", "record": row})
                    )
                    out.write("\n")
        if not body["has_more"]:
            break
        page += 1


if __name__ == "__main__":
    main()
