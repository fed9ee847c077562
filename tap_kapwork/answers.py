"""What the API answered: the body, read against a deadline, and what each status means.

Kept apart from the stream (client.py) so the rules that turn an HTTP answer into a
decoded body or a named failure read in one place.
"""

from __future__ import annotations

import email.utils
import time
import typing as t
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3.exceptions
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_kapwork import bad_text
from tap_kapwork.errors import ApiKeyRejectedError, BadRequestError, KapworkError, NotFoundError

TRANSIENT_STATUSES = {
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.INTERNAL_SERVER_ERROR,
    HTTPStatus.BAD_GATEWAY,
    HTTPStatus.SERVICE_UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT,
}
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
# Warnings about text that is not Unicode, per answer; the rest are counted in one line.
MAX_BAD_TEXT_WARNINGS = 20


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


def check_answer(
    response: requests.Response,
    content: bytes,
    url_base: str,
    warn: Callable[[str], None],
) -> dict[str, t.Any]:
    """Raise for an answer that is not a documented success; else the decoded JSON object.

    Text that is not Unicode inside a JSON answer is decoded with U+FFFD and `warn` is
    told where (see bad_text.py).
    """
    status = response.status_code
    if status in TRANSIENT_STATUSES:
        message = f"{status} {response.reason} from {where(response)}"
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimitedError(message, response, retry_after)
        raise RetriableAPIError(message, response)
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        raise ApiKeyRejectedError(
            f"The Kapwork API rejected the API key ({status} {response.reason} from "
            f"{url_base}). Check that api_key (TAP_KAPWORK_API_KEY) is a current "
            "partner key for this api_url."
        )
    if status == HTTPStatus.NOT_FOUND:
        detail, _ = _error_detail(response, content)
        raise NotFoundError(f"404 Not Found from {where(response)}: {detail}. Check api_url.")
    if status == HTTPStatus.BAD_REQUEST:
        raise bad_request(response, content)
    if not 200 <= status < 300:
        detail, _ = _error_detail(response, content)
        hint = ""
        if 300 <= status < 400:
            location = response.headers.get("Location")
            hint = f" Set api_url to the address it redirects to ({location})."
        raise FatalAPIError(f"{status} {response.reason} from {where(response)}: {detail}.{hint}")
    if "html" in response.headers.get("Content-Type", "").lower():
        raise KapworkError(
            f"{url_base} answered {where(response)} with an HTML page, not the "
            "Kapwork API's JSON. Check api_url."
        )
    # A body cut short by a proxy or a dropped stream still arrives as a 200.
    try:
        payload = _decode(content)
    except ValueError as exc:
        try:  # only for what msgspec refused: keeps the fast path fast
            payload, repaired = bad_text.decode(content)
        except (ValueError, RecursionError):
            raise InvalidBodyError(
                f"invalid JSON body ({len(content)} bytes) from {where(response)}",
                response,
            ) from exc
        _warn_bad_text(payload, repaired, where(response), warn)
    if not isinstance(payload, dict):
        raise InvalidBodyError(
            f"a JSON {type(payload).__name__}, not an object, from {where(response)}",
            response,
        )
    return payload


def _warn_bad_text(
    payload: t.Any, repaired: list[bad_text.Path], request: str, warn: Callable[[str], None]
) -> None:
    """One warning per repaired string, naming the receivable and the field."""
    for path in repaired[:MAX_BAD_TEXT_WARNINGS]:
        rid, field = bad_text.describe(payload, path)
        owner = f"Receivable {rid}" if rid else f"The answer to {request}"
        warn(
            f"{owner}: {field} holds text that is not Unicode (a lone UTF-16 surrogate, "
            f"such as half an emoji, or bytes that are not UTF-8) in the answer to {request}; "
            "it is kept, with U+FFFD in place of what could not be read."
        )
    if len(repaired) > MAX_BAD_TEXT_WARNINGS:
        warn(
            f"{len(repaired) - MAX_BAD_TEXT_WARNINGS} more strings in the same answer to "
            f"{request} hold text that is not Unicode; kept the same way."
        )


def bad_request(response: requests.Response, content: bytes) -> BadRequestError:
    """400: the API's message, and the parameter it named (history_limit is retried lower)."""
    detail, param = _error_detail(response, content)
    named = f" parameter '{param}'" if param else " the request"
    return BadRequestError(
        f"The Kapwork API rejected{named} (400 Bad Request from {where(response)}): {detail}",
        param,
    )


def where(response: requests.Response) -> str:
    """`GET /v1/receivables`: the path only; the query string adds nothing to a message."""
    request = response.request
    path = urlsplit(str(request.url)).path if request is not None else "?"
    method = request.method if request is not None else None
    return f"{method if isinstance(method, str) else 'GET'} {path}"
