"""The Kapwork tap: settings, streams and the command line."""

from __future__ import annotations

import copy
import hashlib
import io
import ipaddress
import json
import os
import re
import sys
import typing as t
from contextlib import contextmanager
from urllib.parse import urlsplit

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_kapwork.catalog import complete_catalog
from tap_kapwork.client import RateLimitGate, RetryStats, override
from tap_kapwork.errors import (
    KapworkError,
    LoaderStoppedReadingError,
    ReportedFailureFilter,
    install_secret_redaction,
)
from tap_kapwork.inputs import (
    check_state,
    env_config,
    parse_json,
    parse_state,
    read_config_files,
)
from tap_kapwork.output import (
    BatchFiles,
    BufferedMsgSpecWriter,
    batch_config,
    batch_config_errors,
    stdout_to_devnull,
)
from tap_kapwork.streams import ReceivableHistoryStream, ReceivablesStream
from tap_kapwork.timestamps import parse_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import click
    from singer_sdk import Stream
    from singer_sdk.singerlib import Catalog

STRING_LIST = th.ArrayType(th.StringType)
# A key is one token of visible ASCII: anything else is a copy-and-paste accident.
API_KEY_PATTERN = re.compile(r"[\x21-\x7e]+")


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
            "lookback_seconds",
            th.IntegerType(minimum=0),
            default=300,
            title="Look-back",
            description="Seconds before the bookmark that every incremental run reads "
            "again, for changes the API makes visible late (replication lag) or stamps "
            "with a clock behind. Costs the rows changed in that window, re-emitted each "
            "run (targets upsert them). 0 disables it.",
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
            STRING_LIST,
            title="Vendor IDs",
            description="Only these vendors. Each combination of filters is its own state "
            "partition with its own bookmark.",
        ),
        th.Property(
            "debtor_ids", STRING_LIST, title="Debtor IDs", description="Only these debtors."
        ),
        th.Property(
            "statuses",
            STRING_LIST,
            title="Statuses",
            description="Only receivables currently in these normalized statuses.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(minimum=1),
            default=60,
            title="Request timeout",
            description="Seconds one attempt of a request may take: connecting, waiting for "
            "the answer and reading all of it.",
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

    def __init__(
        self,
        *args: t.Any,
        config: dict | None = None,
        parse_env_config: bool = False,
        **kwargs: t.Any,
    ) -> None:
        if isinstance(config, dict) or config is None:
            config = dict(config or {})
            if parse_env_config:
                schema = copy.deepcopy(type(self).config_jsonschema)
                type(self).append_builtin_config(schema)
                prefix = self.name.upper().replace("-", "_") + "_"
                config |= env_config(schema, prefix)
                parse_env_config = False  # done: the SDK's parser would redo it worse
            config = _clean_api_key(config)
        super().__init__(*args, config=config, parse_env_config=parse_env_config, **kwargs)
        install_secret_redaction(str(self.config.get("api_key") or ""))
        self.rate_limit_gate = RateLimitGate()
        self.retry_stats = RetryStats()
        if kwargs.get("validate_config", True):
            check_config(self.config)
        batches = batch_config(self.config)
        if batches is not None and isinstance(self.message_writer, BufferedMsgSpecWriter):
            committed = getattr(self, "_committed_batch_files", None)
            lineage = batch_lineage(self.name, self.config, os.environ)
            self.message_writer.use_batches(
                BatchFiles(batches, self.name, committed, lineage, self.logger)
            )

    @property
    @override
    def input_catalog(self) -> Catalog | None:
        """The catalog passed in, with the properties an older catalog lacks added (see
        catalog.complete_catalog)."""
        catalog = super().input_catalog
        if catalog is not None and not getattr(self, "_input_catalog_completed", False):
            self._input_catalog_completed = True
            schemas = {stream.name: stream.schema for stream in self.discover_streams()}
            complete_catalog(catalog, schemas, self.logger)
        return catalog

    @override
    def discover_streams(self) -> list[Stream]:
        streams: list[Stream] = [ReceivablesStream(self), ReceivableHistoryStream(self)]
        for stream in streams:
            stream.logger.addFilter(ReportedFailureFilter())
        return streams

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Check the bookmarks first: one the tap cannot use ends the run in one line."""
        keys = {
            s.name: str(s.replication_key) for s in (ReceivablesStream, ReceivableHistoryStream)
        }
        check_state(state, keys, self.logger)
        # Which run's BATCH files the loader has committed (see output.BatchFiles).
        self._committed_batch_files = state.get(BatchFiles.STATE_KEY)
        super().load_state(state)

    @classmethod
    @override
    def invoke(
        cls,
        *,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
        **kwargs: t.Any,
    ) -> None:
        # The SDK prints a traceback for every failure. Mistakes the user can fix end
        # in one line instead, with the exit code still non-zero.
        with one_line_failures():
            if state is not None:
                parsed = parse_state(state.read(), getattr(state, "name", "--state"))
                state = io.StringIO(json.dumps(parsed))
            if catalog is not None:
                source = getattr(catalog, "name", "--catalog")
                parsed = parse_json(catalog.read(), f"The catalog file {source}")
                if not isinstance(parsed, dict) or not isinstance(parsed.get("streams"), list):
                    raise KapworkError(
                        f'The catalog file {source} has no "streams" list; write it with '
                        "`tap-kapwork --discover`."
                    )
                catalog = io.StringIO(json.dumps(parsed))
            super().invoke(state=state, catalog=catalog, **kwargs)

    @classmethod
    @override
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """Config files that are missing or not JSON end in one line, not a traceback."""
        with one_line_failures():
            read_config_files([path for path in value if path != "ENV"])
        return super().cb_config(ctx, param, value)

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """`--discover`, with the same one-line failures as a sync."""
        with one_line_failures():
            super().cb_discover(ctx, param, value)

    @classmethod
    @override
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """`--test`, with the same one-line failures as a sync."""
        with one_line_failures():
            super().cb_test(ctx, param, value)


@contextmanager
def one_line_failures() -> Iterator[None]:
    """Failures the user can fix: one ERROR line and exit code 1, no traceback."""
    try:
        yield
    except ConfigValidationError as exc:
        _fail(config_error_line(exc.errors))
    except (KapworkError, FatalAPIError) as exc:
        _fail(str(exc))
    except BrokenPipeError:  # outside the writer's flush: `--discover | head -c 10`
        stdout_to_devnull()
        _fail(str(LoaderStoppedReadingError()))


def _clean_api_key(config: dict[str, t.Any]) -> dict[str, t.Any]:
    """Strip whitespace around api_key (a pasted key often ends in a line break), and
    redact both spellings before anything can log them."""
    key = config.get("api_key")
    if isinstance(key, str):
        install_secret_redaction(key)
        if key != key.strip():
            config = {**config, "api_key": key.strip()}
            TapKapwork.logger.warning("api_key had whitespace around it; it was removed.")
    return config


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
            if error.startswith("api_key "):  # our own wording, which never shows the key
                parts.append(error.split(" in config[")[0])
            elif "required" in error:
                parts.append(
                    "api_key is required and must be a non-empty string (set it in the config "
                    "file or as TAP_KAPWORK_API_KEY)"
                )
            else:
                parts.append("api_key must be a non-empty string")
        elif name:
            message = error.split(" in config[")[0]
            parts.append(f"{name}: {message}")
        else:
            parts.append(error)
    return "Invalid configuration: " + "; ".join(parts) + ". See `tap-kapwork --about`."


def check_config(config: t.Mapping[str, t.Any]) -> None:
    """Checks JSON Schema cannot express. Raises ConfigValidationError."""
    errors = []
    key = config.get("api_key")
    if isinstance(key, str) and key and not API_KEY_PATTERN.fullmatch(key):
        errors.append(
            "api_key has a space, line break or non-ASCII character inside it: copy the key "
            "again, exactly as Kapwork issued it in config['api_key']"
        )
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


def batch_lineage(
    tap_name: str, config: t.Mapping[str, t.Any], environ: t.Mapping[str, str]
) -> str:
    """The BATCH files' lineage of a run given no state of an earlier BATCH run: the same
    for every such run of one pipeline, so a run killed before its STATE came back leaves
    its files where the next run of that pipeline removes them; different for pipelines
    that may run at once (Meltano 4.4.1 cannot run one extractor of one project twice at
    once: both would share .meltano/run/<extractor>/)."""
    identity = {
        "tap": tap_name,
        # Set by Meltano for every plugin it runs.
        "meltano": [
            environ.get(name, "")
            for name in ("MELTANO_PROJECT_ROOT", "MELTANO_ENVIRONMENT", "MELTANO_EXTRACTOR_NAME")
        ],
        "config": {k: v for k, v in config.items() if k not in ("api_key", "batch_config")},
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    TapKapwork.cli()
