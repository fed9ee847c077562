"""The HTTP server of the sandbox, and `Sandbox`, which runs it in a background thread."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import socket
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from kapwork_sandbox.data import churn, parse_moment, stamp
from kapwork_sandbox.evolution import Evolution
from kapwork_sandbox.faults import FaultPlan
from kapwork_sandbox.portfolio import build_dataset
from kapwork_sandbox.quirks import Quirks
from kapwork_sandbox.testing import truth_digest

DEFAULT_API_KEY = "sandbox-key"
LIST_PATH = "/v1/receivables"
MAX_LIMIT = 500
ORDERS = ("updated_at", "updated_at_desc", "id")


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param

    def body(self) -> dict:
        error: dict[str, t.Any] = {"type": self.kind, "message": str(self)}
        if self.param:
            error["param"] = self.param
        return {"error": error}


def _int_param(
    params: dict[str, list[str]], name: str, default: int, low: int, high: int | None
) -> int:
    raw = params.get(name, [None])[-1]
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request_error", f"{name} must be an integer", name) from None
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "invalid_request_error", f"{name} must be {limit}", name)
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: t.Any) -> None:
        return  # the request log is kept in Sandbox.requests

    def send_response(self, code: int, message: str | None = None) -> None:
        if not self.server.sandbox.omit_date_header:
            super().send_response(code, message)
            return
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, on the sandbox's clock (`clock_offset_seconds`)."""
        if timestamp is None:
            timestamp = self.server.sandbox.dataset.now().timestamp()
        return email.utils.formatdate(timestamp, usegmt=True)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        if url.path.startswith("/_sandbox/"):
            self._control(method, url.path, self._read_json())
            return
        sandbox = self.server.sandbox
        entry = {
            "method": method,
            "path": url.path,
            "params": params,
            "status": 0,
            "fault": None,
            "time": time.time(),
        }
        sandbox._log(entry)
        if sandbox.on_request is not None:
            sandbox.on_request(dict(entry))
        latency = sandbox.plan.faults.latency_ms
        if latency:
            time.sleep(latency / 1000)
        if self.headers.get("Authorization") != f"Bearer {sandbox.api_key}":
            self._send(
                entry,
                401,
                {"error": {"type": "authentication_error", "message": "Invalid API key"}},
            )
            return
        fault, retry_after = sandbox.plan.decide()
        entry["fault"] = fault
        if fault == "drop":
            entry["status"] = -1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "error":
            status = sandbox.plan.pick_error_status()
            self._send(entry, status, {"error": {"type": "api_error", "message": "Internal error"}})
            return
        if fault == "rate_limit":
            if sandbox.plan.faults.retry_after_format == "http-date":
                now = sandbox.dataset.now().timestamp()
                header = email.utils.formatdate(now + retry_after, usegmt=True)
            else:
                header = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
            limited = {"error": {"type": "rate_limit_error", "message": "Too many requests"}}
            self._send(entry, 429, limited, headers={"Retry-After": header})
            return
        if method != "GET":
            self._send(
                entry,
                405,
                {"error": {"type": "invalid_request_error", "message": "Method not allowed"}},
            )
            return
        try:
            body = sandbox.evolution.apply(self._api(url.path, params))
        except ApiError as exc:
            self._send(entry, exc.status, exc.body())
            return
        if fault == "html":
            page = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
            self._send_bytes(entry, 200, page, "text/html; charset=utf-8")
            return
        if fault == "missing_data" and "data" in body:
            body = {"object": "list", "message": "Service degraded"}
        if url.path == LIST_PATH:  # repeated rows, empty pages, bad text (quirks.py)
            payload = sandbox.quirks.encode(body, params)
        else:
            payload = json.dumps(body, ensure_ascii=False).encode()
        if fault == "truncate":
            payload = payload[: max(1, len(payload) // 2)]
        if fault == "trickle":
            self._trickle(entry, payload)
            return
        self._send_bytes(entry, 200, payload, "application/json")

    def _trickle(self, entry: dict, payload: bytes) -> None:
        """A 200 whose body arrives a few bytes at a time: no single read ever times out."""
        faults = self.server.sandbox.plan.faults
        entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        step = max(1, faults.trickle_bytes)
        try:
            for start in range(0, len(payload), step):
                self.wfile.write(payload[start : start + step])
                self.wfile.flush()
                time.sleep(faults.trickle_interval_ms / 1000)
        except OSError:  # the client gave up and closed the connection
            self.close_connection = True

    def _api(self, path: str, params: dict[str, list[str]]) -> dict:
        sandbox = self.server.sandbox
        dataset = sandbox.dataset
        history_limit = _int_param(params, "history_limit", 10, 1, None)
        if sandbox.max_history_limit is not None and history_limit > sandbox.max_history_limit:
            raise ApiError(
                400,
                "invalid_request_error",
                f"history_limit must be at most {sandbox.max_history_limit}",
                "history_limit",
            )
        if path == LIST_PATH:
            limit = _int_param(params, "limit", 100, 1, MAX_LIMIT)
            page = _int_param(params, "page", 1, 1, None)
            expand = params.get("expand[]", []) + params.get("expand", [])
            unknown = [value for value in expand if value not in ("history", "metadata")]
            if unknown:
                raise ApiError(
                    400, "invalid_request_error", f"Unknown expand value: {unknown[0]}", "expand[]"
                )
            since = self._since(params, dataset.now())
            filters: dict[str, str] = {
                k: params[k][-1] for k in ("vendor_id", "debtor_id", "status") if k in params
            }
            ids = dataset.select(since, filters, sandbox.order, sandbox.verified_since_field)
            chosen = ids[(page - 1) * limit : page * limit]
            data = [
                dataset.render(
                    rid,
                    history=history_limit if "history" in expand else None,
                    metadata="metadata" in expand,
                )
                for rid in chosen
            ]
            body: dict[str, t.Any] = {
                "object": "list",
                "data": [d for d in data if d is not None],
                "has_more": page * limit < len(ids),
                "total_count": len(ids) + sandbox.total_count_offset,
            }
            if sandbox.always_has_more:
                body["has_more"] = True
            if sandbox.omit_has_more:
                del body["has_more"]
            return body
        if path.startswith(LIST_PATH + "/") and path.count("/") == 3:
            rid = unquote(path.rsplit("/", 1)[1])
            record = dataset.render(rid, history=history_limit, metadata=True)
            if record is None:
                raise ApiError(404, "not_found", f"No such receivable: {rid}")
            return record
        raise ApiError(404, "not_found", f"Unknown endpoint: {path}")

    @staticmethod
    def _since(params: dict[str, list[str]], now: dt.datetime) -> str | None:
        raw = params.get("verified_since", [None])[-1]
        if raw is None:
            return stamp(now - _day())
        if raw == "all":
            return None
        try:
            return stamp(parse_moment(raw))
        except ValueError:
            raise ApiError(
                400,
                "invalid_request_error",
                "verified_since must be 'all' or an ISO 8601 timestamp",
                "verified_since",
            ) from None

    def _control(self, method: str, path: str, body: dict) -> None:
        sandbox = self.server.sandbox
        entry: dict[str, t.Any] = {}
        try:
            if path == "/_sandbox/health":
                result: t.Any = {"ok": True, "receivables": len(sandbox.dataset.records)}
            elif path == "/_sandbox/truth":
                result = {"data": sandbox.truth()}
            elif path == "/_sandbox/digest":
                with sandbox.dataset.lock:
                    result = truth_digest(sandbox.dataset.records.values())
            elif path == "/_sandbox/mutate" and method == "POST":
                result = {
                    "updated": sandbox.mutate(
                        int(body.get("count", 0)),
                        seed=body.get("seed"),
                        backdate_seconds=float(body.get("backdate_seconds", 0)),
                    ),
                    "inserted": sandbox.insert(int(body.get("insert", 0))),
                }
            elif path == "/_sandbox/raw" and method == "POST":
                sandbox.set_raw(str(body["id"]), **body.get("fields", {}))
                result = {"ok": True}
            elif path == "/_sandbox/fields":
                result = sandbox.evolution.control(method, body)
            elif path == "/_sandbox/faults" and method == "POST":
                sandbox.set_faults(**body)
                result = dict(vars(sandbox.faults))
            elif path == "/_sandbox/quirks" and method == "POST":
                result = sandbox.quirks.configure(body)
            elif path == "/_sandbox/churn" and method == "POST":
                rate = float(body.get("per_second", 0))
                if rate > 0:
                    sandbox.start_churn(rate, float(body.get("insert_ratio", 0.0)))
                else:
                    sandbox.stop_churn()
                result = {"per_second": rate}
            elif path == "/_sandbox/requests" and method == "GET":
                result = {"data": sandbox.requests}
            elif path == "/_sandbox/requests" and method == "DELETE":
                sandbox.clear_requests()
                result = {"ok": True}
            else:
                raise ApiError(404, "not_found", f"Unknown control endpoint: {method} {path}")
        except ApiError as exc:
            self._send(entry, exc.status, exc.body())
            return
        except (TypeError, ValueError) as exc:
            self._send(
                entry, 400, {"error": {"type": "invalid_request_error", "message": str(exc)}}
            )
            return
        self._send(entry, 200, result)

    def _read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _send(
        self, entry: dict, status: int, body: t.Any, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        self._send_bytes(entry, status, payload, "application/json", headers)

    def _send_bytes(
        self,
        entry: dict,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _day() -> dt.timedelta:
    return dt.timedelta(days=1)


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: Sandbox


class Sandbox:
    """A local Kapwork Partner API with deterministic data, knobs and ground truth."""

    def __init__(
        self,
        receivables: int = 1000,
        seed: int = 42,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        anchor: dt.datetime | None = None,
        *,
        clock_offset_seconds: float = 0,
        verified_since_field: str = "updated_at",
        profile: str = "edge",
        same_instant_share: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        # The API's clock runs this much ahead (or behind, < 0) of this machine's: its
        # Date header, the stamps of new changes and its 24-hour default follow it.
        # `edge` (the tests' default) or `realistic` (the demo's), see portfolio.py
        self.dataset = build_dataset(
            profile,
            receivables,
            seed,
            anchor,
            _seconds(clock_offset_seconds),
            same_instant_share,
        )
        self.plan = FaultPlan()
        # Fields the docs do not list, added to answers and truth (evolution.py).
        self.evolution = Evolution()
        # List answers wrong in what they say: repeated rows, empty pages, bad text.
        self.quirks = Quirks(self.dataset)
        self.max_history_limit: int | None = None
        self.order = "updated_at"
        # What `verified_since` filters on: "updated_at", or "verified_at", the hidden
        # time Kapwork last verified a receivable (see `verify`).
        self.verified_since_field = verified_since_field
        # Paging that lies: no has_more at all, has_more always true, a total_count off
        # by this much (the same on every request).
        self.omit_has_more = False
        self.always_has_more = False
        self.total_count_offset = 0
        # An API (or a proxy) that sends no Date header.
        self.omit_date_header = False
        # Called with each API request's log entry before it is answered (tests use it to
        # change data at a precise point of a run).
        self.on_request: t.Callable[[dict], None] | None = None
        self._requests: list[dict] = []
        self._requests_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._churn_stop: threading.Event | None = None
        self._churn_thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Sandbox:
        if self._server is None:
            self._server = _Server((self.host, self.port), Handler)
            self._server.sandbox = self
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, daemon=True, name="kapwork-sandbox"
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_churn()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Foreground serving, for the command line."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # data
    def truth(self) -> list[dict]:
        return self.evolution.truth(self.dataset.truth())

    def add_fields(
        self, level: str, fields: t.Mapping[str, str] | None = None, **where: t.Any
    ) -> dict[str, str]:
        """The API starts sending fields the docs do not list, at `level` ("receivable",
        "entry" or "change"); `fields` (name -> JSON kind) defaults to one of every kind;
        `where`: `share=0.3`, or `ids=[...]`, and `seed` (see evolution.Evolution.add)."""
        return self.evolution.add(level, fields, **where).fields

    def mutate(
        self,
        count: int,
        *,
        seed: int | None = None,
        ids: list[str] | None = None,
        backdate_seconds: float = 0,
    ) -> list[str]:
        """Change receivables; `backdate_seconds` stamps the change in the past (lag)."""
        return self.dataset.mutate(count, seed, ids=ids, backdate_seconds=backdate_seconds)

    def verify(self, ids: list[str]) -> None:
        """Move the hidden verification time of `ids` to now, changing nothing else."""
        self.dataset.verify(ids)

    def insert(self, count: int) -> list[str]:
        return self.dataset.insert(count)

    def set_raw(self, rid: str, **fields: t.Any) -> None:
        """Make the API answer these raw values for receivable `rid` (see Dataset.set_raw)."""
        self.dataset.set_raw(rid, **fields)

    def start_churn(self, per_second: float, insert_ratio: float = 0.0) -> None:
        self.stop_churn()
        self._churn_stop = threading.Event()
        self._churn_thread = threading.Thread(
            target=churn,
            args=(self.dataset, per_second, insert_ratio, self._churn_stop),
            daemon=True,
            name="kapwork-sandbox-churn",
        )
        self._churn_thread.start()

    def stop_churn(self) -> None:
        if self._churn_stop is not None and self._churn_thread is not None:
            self._churn_stop.set()
            self._churn_thread.join()
            self._churn_stop = self._churn_thread = None

    # quirks (see quirks.py)
    def repeat_older_version(
        self, rid: str, *, page: int | None = None, before: bool = True
    ) -> None:
        """List `rid` also as it was before its newest change, on its own page (`before`
        the current version or after it) or on page `page`."""
        self.quirks.repeat_older_version(rid, page=page, before=before)

    def empty_pages(self, *pages: int, times: int | None = None) -> None:
        """Serve these list pages empty (has_more and total_count unchanged), the first
        `times` times each, or always."""
        self.quirks.empty_pages(*pages, times=times)

    def bad_text(self, rid: str, field: str = "vendor.name", kind: str = "surrogate") -> None:
        """End a string of `rid` in list answers with a lone surrogate or bytes that are
        not UTF-8 (`kind`: "surrogate" or "bytes"); the rest of the answer stays valid."""
        self.quirks.bad_text(rid, field, kind)

    def clear_quirks(self) -> None:
        self.quirks.clear()

    # faults
    @property
    def faults(self) -> t.Any:
        return self.plan.faults

    def set_faults(self, **settings: t.Any) -> None:
        self.plan.configure(**settings)

    def clear_faults(self) -> None:
        self.plan.configure()

    # request log
    def _log(self, entry: dict) -> None:
        with self._requests_lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[dict]:
        with self._requests_lock:
            return [dict(e) for e in self._requests]

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()
