"""The Kapwork REST base stream: auth, error handling and retries."""

from __future__ import annotations

import random
import sys
import threading
import time
import typing as t
from functools import cached_property
from http import HTTPStatus

import backoff
import requests
from singer_sdk import metrics
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.streams import RESTStream

from tap_kapwork.answers import (
    AttemptTimeoutError,
    InvalidBodyError,
    RateLimitedError,
    check_answer,
    read_body,
)
from tap_kapwork.errors import KapworkError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from backoff.types import Details
    from singer_sdk.singerlib.encoding import GenericSingerWriter

    from tap_kapwork.tap import TapKapwork

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 60.0


class RetryBudgetError(KapworkError):
    """The API asked for a longer wait (Retry-After) than the retry budget has left."""


def retry_kind(exc: BaseException) -> str:
    """Name the kind of transient failure, for the retry summary."""
    if isinstance(exc, RateLimitedError):
        return "429"
    if isinstance(exc, InvalidBodyError):
        return "invalid body"
    if isinstance(exc, RetriableAPIError):
        return "5xx"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    return "connection"


class RateLimitGate:
    """A pause shared by all request threads.

    When one worker is told to slow down (429), every worker waits the same
    Retry-After instead of N workers hammering the API in turn.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        while (remaining := self._until - time.monotonic()) > 0:
            time.sleep(remaining)


class RetryStats:
    """Retries by kind and the time spent waiting, shared by every stream and thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_kind: dict[str, int] = {}
        self.waited = 0.0

    def add(self, kind: str, wait: float) -> None:
        with self._lock:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.waited += wait

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.by_kind.items()))
        return f"{self.total} retries ({kinds or 'none'}), {self.waited:.1f} s spent waiting"


class KapworkStream(RESTStream[int]):
    """Base for Kapwork streams: one place for auth, errors, retries and rate limits."""

    # A redirect would send the bearer token to wherever it points; fail instead.
    allow_redirects = False

    @property
    @override
    def url_base(self) -> str:
        return str(self.config["api_url"]).rstrip("/")

    @cached_property
    @override
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["api_key"])

    @property
    @override
    def http_headers(self) -> dict:
        return {"Accept": "application/json"}

    @property
    @override
    def timeout(self) -> int:
        """Seconds one attempt may take, body included (see `read_body`)."""
        return self.config["request_timeout"]

    @property
    def kapwork_tap(self) -> TapKapwork:
        """The tap that runs this stream, with its shared objects typed."""
        return t.cast("TapKapwork", self._tap)

    @property
    def gate(self) -> RateLimitGate:
        return self.kapwork_tap.rate_limit_gate

    @property
    def retry_stats(self) -> RetryStats:
        return self.kapwork_tap.retry_stats

    @property
    def message_writer(self) -> GenericSingerWriter[t.Any, t.Any]:
        return self.kapwork_tap.message_writer

    @property
    @override
    def requests_session(self) -> requests.Session:
        # Page fetches run on several threads; requests.Session is not documented as
        # thread-safe, so each thread keeps its own (connection reuse stays per thread).
        local = self.__dict__.setdefault("_thread_sessions", threading.local())
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return session

    def check_response(self, response: requests.Response, content: bytes) -> dict[str, t.Any]:
        """Raise for an answer that is not a documented success; else the decoded body.

        The SDK's `validate_response` hook reads `response.content`; here the body was
        read against a deadline first (see `answers.read_body`), so it is passed in.
        """
        return check_answer(response, content, self.url_base, self.warn_once)

    def warn_once(self, message: str) -> None:
        """Log `message` once per run, however many partitions, passes or worker threads
        come across it."""
        warned = self.__dict__.setdefault("_warned", set())
        if message not in warned:
            warned.add(message)
            self.logger.warning("%s", message)

    @override
    def request_decorator(self, func: Callable) -> Callable:
        # The SDK's decorator retries a fixed number of times with no total budget and
        # ignores Retry-After; ours adds both, a shared 429 pause, and invalid bodies.
        def gated(*args: t.Any, **kwargs: t.Any) -> t.Any:
            self.gate.wait()
            return func(*args, **kwargs)

        return backoff.on_exception(
            self.backoff_wait_generator,
            (
                RetriableAPIError,
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
                ConnectionResetError,
            ),
            max_tries=self.config["retry_max_tries"],
            max_time=self.config["retry_max_wait"],
            on_backoff=self.backoff_handler,
            on_giveup=self._give_up,
            jitter=None,
            logger=None,
        )(gated)

    @override
    def backoff_wait_generator(self) -> Generator[float, t.Any, None]:
        """Exponential backoff with full jitter, or exactly what Retry-After asks.

        A Retry-After longer than what is left of retry_max_wait fails the run at once:
        sleeping toward a budget that cannot be met only delays the same failure.
        """
        started = time.monotonic()  # backoff primes the generator when a request starts
        budget = float(self.config["retry_max_wait"])
        exc = yield 0.0
        attempt = 0
        while True:
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                left = budget - (time.monotonic() - started)
                if retry_after > left:
                    raise RetryBudgetError(
                        f"The API asked to wait {retry_after:.0f} s (Retry-After) but "
                        f"retry_max_wait leaves {max(left, 0):.0f} s: {self._describe(exc)}. "
                        "Raise retry_max_wait or run later."
                    ) from exc
                wait = retry_after + random.uniform(0, 0.25)
            else:
                ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
                wait = random.uniform(ceiling / 2, ceiling)
            attempt += 1
            exc = yield wait

    @override
    def backoff_handler(self, details: Details) -> None:
        exc = details.get("exception")
        wait = float(details.get("wait") or 0.0)
        kind = retry_kind(exc) if exc else "unknown"
        self.retry_stats.add(kind, wait)
        if isinstance(exc, RateLimitedError):
            self.gate.pause(wait)
        self.logger.warning(
            "Retrying in %.1f s after try %d (%s): %s",
            wait,
            details.get("tries", 0),
            kind,
            self._describe(exc),
        )

    def _give_up(self, details: Details) -> None:
        exc = details.get("exception")
        raise KapworkError(
            f"Gave up after {details.get('tries')} tries in {details.get('elapsed', 0):.0f} s: "
            f"{self._describe(exc)}. Check that api_url ({self.url_base}) is reachable, or raise "
            "retry_max_tries / retry_max_wait / request_timeout."
        ) from exc

    def _describe(self, exc: BaseException | None) -> str:
        if isinstance(exc, RetriableAPIError):
            return str(exc)
        if isinstance(exc, requests.exceptions.Timeout):
            # AttemptTimeoutError says why (a body still arriving); a socket timeout, not.
            why = f": {exc}" if isinstance(exc, AttemptTimeoutError) else ""
            return (
                f"no complete answer within request_timeout "
                f"({self.config['request_timeout']:g} s){why}"
            )
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return "the connection broke while the body arrived"
        if isinstance(exc, requests.exceptions.ConnectionError):
            reason = str(exc.args[0]) if exc.args else type(exc).__name__
            # urllib3 messages repeat the host and path; the cause is at the end.
            return "connection failed (" + reason.rsplit(": ", 1)[-1].rstrip(")'\"") + ")"
        return type(exc).__name__ if exc else "unknown error"

    def get_json(self, path: str, params: dict[str, t.Any]) -> dict[str, t.Any]:
        """GET `path` with retries; returns the decoded JSON object."""
        request = self.build_prepared_request(
            method="GET",
            url=self.url_base + path,
            params=params,
            headers=self.http_headers,
        )
        return self._get_with_retries(request)

    @cached_property
    def _get_with_retries(self) -> Callable[[requests.PreparedRequest], dict[str, t.Any]]:
        return self.request_decorator(self._attempt)

    def _attempt(self, request: requests.PreparedRequest) -> dict[str, t.Any]:
        """One try: send, read the whole body before the deadline, check it, decode it.

        Sent here rather than through the SDK's `_request`, which reads the body without
        a deadline (see `read_body`).
        """
        timeout = float(self.config["request_timeout"])
        started = time.monotonic()
        response = self.requests_session.send(
            request, timeout=timeout, allow_redirects=self.allow_redirects, stream=True
        )
        try:
            content = read_body(response, started + timeout)
        finally:
            response.close()
        self._log_request_duration(response, time.monotonic() - started)
        self._answers.date = response.headers.get("Date")
        return self.check_response(response, content)

    @cached_property
    def _answers(self) -> threading.local:
        return threading.local()

    def last_response_date(self) -> str | None:
        """The `Date` header of the last answer this thread received: the API's clock."""
        return getattr(self._answers, "date", None)

    def _log_request_duration(self, response: requests.Response, seconds: float) -> None:
        """The SDK's `http_request_duration` metric, for the whole attempt."""
        status = response.status_code
        metrics.log(
            self.metrics_logger,
            metrics.Point(
                "timer",
                metric=metrics.Metric.HTTP_REQUEST_DURATION,
                value=seconds,
                tags={
                    metrics.Tag.STREAM: self.name,
                    metrics.Tag.ENDPOINT: self.path,
                    metrics.Tag.HTTP_STATUS_CODE: status,
                    metrics.Tag.STATUS: (
                        metrics.Status.SUCCEEDED
                        if status < HTTPStatus.BAD_REQUEST
                        else metrics.Status.FAILED
                    ),
                },
            ),
        )
