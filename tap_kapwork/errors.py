"""User-facing failures and the guard that keeps the API key out of every output."""

from __future__ import annotations

import logging
import typing as t

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


def _redactor(secret: str) -> t.Callable[[str], str]:
    def redact(text: str) -> str:
        return text.replace(secret, "***") if secret in text else text

    return redact


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
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    factory._kapwork_redacts = secret  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
