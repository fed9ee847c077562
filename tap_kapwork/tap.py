"""The Kapwork tap: settings, streams and the command line."""

from __future__ import annotations

import ipaddress
import re
import sys
import typing as t
from urllib.parse import urlsplit

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_kapwork.client import RateLimitGate, RetryStats, override
from tap_kapwork.errors import KapworkError, install_secret_redaction
from tap_kapwork.output import BufferedMsgSpecWriter, batch_config, batch_config_errors
from tap_kapwork.streams import ReceivableHistoryStream, ReceivablesStream
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from singer_sdk import Stream

STRINGS = th.ArrayType(th.StringType)


class TapKapwork(Tap):
    """Singer tap for the Kapwork Partner API."""

    name = "tap-kapwork"
    package_name = "tap-kapwork"
    message_writer_class = BufferedMsgSpecWriter
    # BATCH: opt-in `batch_config`, written by the tap's writer (see output.BatchFiles).
    # No ACTIVATE_VERSION (both streams are incremental).
    capabilities: t.ClassVar[list] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.BATCH,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            title="API key",
            description="Kapwork Partner API key, sent as `Authorization: Bearer …`.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default="https://api.kapwork.com",
            title="API URL",
            description="Base URL of the API (the sandbox prints `http://127.0.0.1:PORT`).",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description="Lower bound for the first run. Without it (and without state) the "
            "first run loads every receivable (`verified_since=all`).",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=500),
            default=500,
            title="Page size",
            description="Receivables per list page (`limit`), 1 to 500.",
        ),
        th.Property(
            "history_limit",
            th.IntegerType(minimum=1),
            default=100,
            title="History limit",
            description="History entries asked per receivable on list pages. Longer "
            "histories are completed with one single-receivable request each.",
        ),
        th.Property(
            "include_metadata",
            th.BooleanType,
            default=True,
            title="Include metadata",
            description="Ask for the portal `metadata` object (`expand[]=metadata`).",
        ),
        th.Property(
            "vendor_ids",
            STRINGS,
            title="Vendor IDs",
            description="Only these vendors. Each combination of filters is its own state "
            "partition with its own bookmark.",
        ),
        th.Property("debtor_ids", STRINGS, title="Debtor IDs", description="Only these debtors."),
        th.Property(
            "statuses",
            STRINGS,
            title="Statuses",
            description="Only receivables currently in these normalized statuses.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(minimum=1),
            default=60,
            title="Request timeout",
            description="Seconds to wait for the API to connect or answer, per request.",
        ),
        th.Property(
            "retry_max_tries",
            th.IntegerType(minimum=1),
            default=8,
            title="Retry: max tries",
            description="Tries per request for transient failures (429, 5xx, connection "
            "errors, timeouts, cut-short bodies) before the run fails.",
        ),
        th.Property(
            "retry_max_wait",
            th.NumberType(minimum=0),
            default=300,
            title="Retry: max wait",
            description="Total seconds one request may spend retrying before the run fails.",
        ),
        th.Property(
            "max_parallel_requests",
            th.IntegerType(minimum=1, maximum=16),
            default=4,
            title="Parallel requests",
            description="List pages fetched at once after page 1 (1 = sequential).",
        ),
        th.Property(
            "allow_insecure_http",
            th.BooleanType,
            default=False,
            title="Allow plain HTTP",
            description="Send the API key over plain http to a host that is not loopback.",
        ),
        th.Property(
            "progress_interval",
            th.NumberType(minimum=1),
            default=30,
            title="Progress interval",
            description="Seconds between progress lines in the log on long runs.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        install_secret_redaction(str(self.config.get("api_key") or ""))
        self.rate_limit_gate = RateLimitGate()
        self.retry_stats = RetryStats()
        if kwargs.get("validate_config", True):
            check_config(self.config)
        batches = batch_config(self.config)
        if batches is not None and isinstance(self.message_writer, BufferedMsgSpecWriter):
            self.message_writer.use_batches(batches, self.name)

    @override
    def discover_streams(self) -> list[Stream]:
        return [ReceivablesStream(self), ReceivableHistoryStream(self)]

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        # The SDK prints a traceback for every failure. Mistakes the user can fix end
        # in one line instead, with the exit code still non-zero.
        try:
            super().invoke(*args, **kwargs)
        except ConfigValidationError as exc:
            _fail(config_error_line(exc.errors))
        except (KapworkError, FatalAPIError) as exc:
            _fail(str(exc))


def _fail(message: str) -> t.NoReturn:
    TapKapwork.logger.error("%s", message)
    sys.exit(1)


def config_error_line(errors: list[str]) -> str:
    """One line for all config errors, without echoing any value of api_key."""
    parts = []
    for error in errors:
        setting = re.search(r"config\['([^']+)'\]|'([^']+)' is a required property", error)
        name = next((g for g in setting.groups() if g), None) if setting else None
        if name == "api_key":
            parts.append(
                "api_key is required and must be a non-empty string (set it in the config "
                "file or as TAP_KAPWORK_API_KEY)"
                if "required" in error
                else "api_key must be a non-empty string"
            )
        elif name:
            message = error.split(" in config[")[0]
            parts.append(f"{name}: {message}")
        else:
            parts.append(error)
    return "Invalid configuration: " + "; ".join(parts) + ". See `tap-kapwork --about`."


def check_config(config: t.Mapping[str, t.Any]) -> None:
    """Checks JSON Schema cannot express. Raises ConfigValidationError."""
    errors = []
    if config.get("start_date"):
        try:
            parse_timestamp(str(config["start_date"]))
        except ValueError:
            errors.append(
                f"start_date {config['start_date']!r} is not an ISO 8601 date-time "
                "(e.g. 2026-01-01T00:00:00Z) in config['start_date']"
            )
    url = urlsplit(str(config.get("api_url", "")))
    if url.scheme not in ("http", "https") or not url.hostname:
        errors.append(
            f"{config.get('api_url')!r} is not an http(s) URL such as "
            "https://api.kapwork.com in config['api_url']"
        )
    elif (
        url.scheme == "http"
        and not _is_loopback(url.hostname)
        and not config.get("allow_insecure_http")
    ):
        errors.append(
            "refusing to send the API key over plain http to "
            f"{url.hostname}: use https, or set allow_insecure_http to true in config['api_url']"
        )
    errors += batch_config_errors(config)
    if errors:
        raise ConfigValidationError("Config validation failed", errors=errors)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    TapKapwork.cli()
