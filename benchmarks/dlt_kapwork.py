"""The reference a data engineer would write instead of a Singer pipeline: dlt's rest_api.

Runs in its own virtualenv (`make dlt`: .venv-dlt, dlt pinned to the version measured),
never in the tap's. Written from dlt's rest_api docs for the Kapwork API: page-number
paging until `has_more` is false, merge on `id`, incremental on `updated_at` sent as
`verified_since`. History lands as dlt's child table `receivables__history` (one row per
history entry, `changes__<field>__from/to` columns).

    .venv-dlt/bin/python benchmarks/dlt_kapwork.py --url http://127.0.0.1:8765 \
        --api-key sandbox-key --destination duckdb --path out.duckdb --format jsonl
"""

from __future__ import annotations

import argparse

import dlt
from dlt.sources.rest_api import rest_api_source


def kapwork(url: str, api_key: str) -> dlt.sources.DltSource:
    return rest_api_source(
        {
            "client": {
                "base_url": url,
                "auth": {"type": "bearer", "token": api_key},
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "total_path": None,
                    "has_more_path": "has_more",
                },
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                {
                    "name": "receivables",
                    "endpoint": {
                        "path": "/v1/receivables",
                        "data_selector": "data",
                        "params": {
                            "limit": 500,
                            "expand[]": ["history", "metadata"],
                            "history_limit": 100,
                            "verified_since": {
                                "type": "incremental",
                                "cursor_path": "updated_at",
                                "initial_value": "1970-01-01T00:00:00.000Z",
                            },
                        },
                    },
                }
            ],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--destination", choices=["postgres", "duckdb"], required=True)
    parser.add_argument("--path", help="DuckDB file")
    parser.add_argument("--dsn", help="postgresql://user@host:port/db")
    parser.add_argument("--format", default=None, help="loader_file_format (default: dlt's)")
    parser.add_argument("--dataset", default="kapwork_dlt")
    parser.add_argument("--pipelines-dir", required=True)
    args = parser.parse_args()

    if args.destination == "duckdb":
        destination = dlt.destinations.duckdb(args.path)
    else:
        destination = dlt.destinations.postgres(args.dsn)
    pipeline = dlt.pipeline(
        pipeline_name=f"kapwork_{args.destination}",
        pipelines_dir=args.pipelines_dir,
        destination=destination,
        dataset_name=args.dataset,
    )
    info = pipeline.run(kapwork(args.url, args.api_key), loader_file_format=args.format)
    info.raise_on_failed_jobs()


if __name__ == "__main__":
    main()
