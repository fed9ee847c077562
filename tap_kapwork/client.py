"""The Kapwork REST base stream: auth, error handling and retries."""

from __future__ import annotations

import email.utils
import random
import sys
import threading
import time
import typing as t
from functools import cached_property
from http import HTTPStatus
from urllib.parse import urlsplit

import backoff
import msgspec
import requests
import urllib3.exceptions
from singer_sdk import metrics
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.streams import RESTStream

from tap_kapwork.errors import ApiKeyRejectedError, BadRequestError, KapworkError, NotFoundError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from backoff.types import Details
    from singer_sdk.singerlib.encoding import GenericSingerWriter

    from tap_kapwork.tap import TapKapwork

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

TRANSIENT_STATUSES = {
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.INTERNAL_SERVER_ERROR,
    HTTPStatus.BAD_GATEWAY,
    HTTPStatus.SERVICE_UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT,
}
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 60.0
# Bytes asked of the socket per read while a body arrives (each read returns what is there).
READ_CHUNK_BYTES = 1 << 18


class RateLimitedError(RetriableAPIError):
    """429, with the wait the API asked for (seconds), if it said."""

    def __init__(self, message: str, response: requests.Response, retry_after: float | None):
        super().__init__(message, response)
        self.retry_after = retry_after


class InvalidBodyError(RetriableAPIError):
    """A 2xx whose body is not the JSON object the docs describe (often cut short)."""


class AttemptTimeoutError(requests.exceptions.Timeout):
    """One attempt (connect, answer and whole body) outlasted request_timeout."""


class RetryBudgetError(KapworkError):
    """The API asked for a longer wait (Retry-After) than the retry budget has left."""


def read_body(response: requests.Response, deadline: float) -> bytes:
    """The whole body of a `stream=True` response, or AttemptTimeoutError at `deadline`.

    requests' timeout bounds each socket read, not the response: a body that trickles
    in a few bytes at a time never trips it. `read1` returns whatever has arrived, so
    the deadline is checked at least once per read timeout.
    """
    raw = response.raw
    chunks: list[bytes] = []
    try:
        while chunk := raw.read1(READ_CHUNK_BYTES):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise AttemptTimeoutError("the body was still arriving at the deadline")
    except AttemptTimeoutError:
        raise
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise AttemptTimeoutError("no byte arrived for a whole read timeout") from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError, OSError) as exc:
        # A connection dropped mid-body, or a body shorter than its Content-Length.
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    return b"".join(chunks)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# Several times faster than json.loads on a list page; its DecodeError is a ValueError.
_decode = msgspec.json.Decoder().decode


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


def _error_detail(response: requests.Response, content: bytes) -> tuple[str, str | None]:
    """The API's own error message and the parameter it names, when it gives them."""
    try:
        body = _decode(content)
    except ValueError:
        return response.reason or "", None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or response.reason), error.get("param")
    if isinstance(error, str):
        return error, body.get("param")
    return str(body.get("message") or response.reason), body.get("param")


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
        read against a deadline first (see `read_body`), so it is passed in.
        """
        status = response.status_code
        if status in TRANSIENT_STATUSES:
            message = f"{status} {response.reason} from {self._where(response)}"
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise RateLimitedError(message, response, retry_after)
            raise RetriableAPIError(message, response)
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            raise ApiKeyRejectedError(
                f"The Kapwork API rejected the API key ({status} {response.reason} from "
                f"{self.url_base}). Check that api_key (TAP_KAPWORK_API_KEY) is a current "
                "partner key for this api_url."
            )
        if status == HTTPStatus.NOT_FOUND:
            detail, _ = _error_detail(response, content)
            raise NotFoundError(
                f"404 Not Found from {self._where(response)}: {detail}. Check api_url."
            )
        if status == HTTPStatus.BAD_REQUEST:
            raise self.bad_request(response, content)
        if not 200 <= status < 300:
            detail, _ = _error_detail(response, content)
            hint = ""
            if 300 <= status < 400:
                location = response.headers.get("Location")
                hint = f" Set api_url to the address it redirects to ({location})."
            raise FatalAPIError(
                f"{status} {response.reason} from {self._where(response)}: {detail}.{hint}"
            )
        if "html" in response.headers.get("Content-Type", "").lower():
            raise KapworkError(
                f"{self.url_base} answered {self._where(response)} with an HTML page, not the "
                "Kapwork API's JSON. Check api_url."
            )
        # A body cut short by a proxy or a dropped stream still arrives as a 200.
        try:
            payload = _decode(content)
        except ValueError as exc:
            raise InvalidBodyError(
                f"invalid JSON body ({len(content)} bytes) from {self._where(response)}",
                response,
            ) from exc
        if not isinstance(payload, dict):
            raise InvalidBodyError(
                f"a JSON {type(payload).__name__}, not an object, from {self._where(response)}",
                response,
            )
        return payload

    def bad_request(self, response: requests.Response, content: bytes) -> BadRequestError:
        detail, param = _error_detail(response, content)
        named = f" parameter '{param}'" if param else " the request"
        where = self._where(response)
        return BadRequestError(
            f"The Kapwork API rejected{named} (400 Bad Request from {where}): {detail}", param
        )

    @staticmethod
    def _where(response: requests.Response) -> str:
        # Path only: the query string could carry caller data and adds nothing here.
        request = response.request
        path = urlsplit(str(request.url)).path if request is not None else "?"
        method = request.method if request is not None else None
        return f"{method if isinstance(method, str) else 'GET'} {path}"

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
