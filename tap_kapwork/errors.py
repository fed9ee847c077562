"""User-facing failures and the guard that keeps the API key out of every output."""

from __future__ import annotations

import json
import logging
import sys
import typing as t
from urllib.parse import quote, quote_plus

from singer_sdk.exceptions import FatalAPIError, MaxRecordsLimitException

MIN_SECRET_LENGTH = 6


class KapworkError(Exception):
    """A failure the user can fix: reported as one line, with no traceback."""


class ApiKeyRejectedError(KapworkError):
    """401/403: the API did not accept the key."""


class NotFoundError(KapworkError):
    """404 from the API."""


class BadRequestError(KapworkError):
    """400 from the API; `param` is the parameter it named, if it named one."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class LoaderStoppedReadingError(KapworkError):
    """The process reading the tap's standard output went away (a broken pipe)."""

    def __init__(self) -> None:
        super().__init__(
            "The loader stopped reading the tap's output (broken pipe): look at the "
            "loader's own error above. The tap stopped too; the next run reads again from "
            "the last bookmark the loader saved."
        )


def secret_spellings(secret: str) -> list[str]:
    """`secret` as it could appear in a message: raw, JSON-escaped, inside a bytes repr,
    URL-encoded. Longest first, so a longer spelling is replaced before its parts."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    return sorted(forms, key=len, reverse=True)


def _redactor(secret: str) -> t.Callable[[str], str]:
    forms = secret_spellings(secret)

    def redact(text: str) -> str:
        for form in forms:
            if form in text:
                text = text.replace(form, "***")
        return text

    return redact


class ReportedFailureFilter(logging.Filter):
    """Drops the SDK's "An unhandled error occurred while syncing" line when the error is
    one the tap reports in one line itself, or `--test` reaching its record limit (not an
    error). The SDK logs it inside its `except` block, so the error is `sys.exc_info()`.
    """

    @staticmethod
    def reported(exc: BaseException | None) -> bool:
        return isinstance(exc, (KapworkError, FatalAPIError, MaxRecordsLimitException)) or (
            exc is not None and isinstance(exc.__cause__, MaxRecordsLimitException)
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("An unhandled error occurred"):
            return True
        return not self.reported(sys.exc_info()[1])


def install_secret_redaction(secret: str) -> None:
    """Replace `secret` with *** in every log record any logger creates from now on.

    A record factory (not a handler filter) is used because the SDK, requests and
    urllib3 each bring their own loggers and handlers; the factory sees every record,
    including the text of exceptions logged with a traceback.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        # Too short to be a real key; redacting it would garble every message.
        return
    redact = _redactor(secret)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_kapwork_redacts", None) == secret:
        return

    def factory(*args: t.Any, **kwargs: t.Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:  # formatted here, or by an earlier factory in the chain
            record.exc_text = redact(record.exc_text)
        return record

    factory._kapwork_redacts = secret  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
