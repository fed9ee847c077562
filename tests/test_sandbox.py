"""The sandbox is a product feature: its API must behave as the Kapwork docs say."""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import msgspec
import pytest
from helpers import API_KEY

from kapwork_sandbox import Sandbox
from kapwork_sandbox.data import Dataset, parse_moment

SANDBOX_CLI = str(Path(sys.executable).with_name("kapwork-sandbox"))
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def call(sandbox: Sandbox, path: str, key: str | None = API_KEY, **params) -> tuple[int, dict]:
    """GET an API path; (status, decoded JSON body)."""
    query = urllib.parse.urlencode(params, doseq=True)
    request = urllib.request.Request(f"{sandbox.url}{path}?{query}")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def raw_get(sandbox: Sandbox, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET without decoding: (status, headers, body)."""
    connection = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {API_KEY}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def control_call(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> dict:
    """A control endpoint (`/_sandbox/<path>`), its JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/{path}", data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def list_all(sandbox: Sandbox, **params) -> list[dict]:
    rows, page = [], 1
    while True:
        status, body = call(sandbox, "/v1/receivables", page=page, **params)
        assert status == 200, body
        rows += body["data"]
        if not body["has_more"]:
            return rows
        page += 1


@pytest.fixture(scope="module")
def fixed() -> t.Iterator[Sandbox]:
    """Read-only, with a fixed anchor so data does not depend on the clock."""
    with Sandbox(receivables=800, seed=5, api_key=API_KEY, anchor=ANCHOR) as sandbox:
        yield sandbox


def test_a_wrong_or_missing_key_gets_a_401_json_error(fixed):
    for key in ("wrong-key", None):
        status, body = call(fixed, "/v1/receivables", key=key)
        assert status == 401
        assert body["error"]["type"] == "authentication_error"


def test_paging_returns_every_receivable_once_with_total_count(fixed):
    status, first = call(fixed, "/v1/receivables", verified_since="all", limit=75)
    assert status == 200
    assert first["object"] == "list"
    assert first["total_count"] == 800
    assert len(first["data"]) == 75
    assert first["has_more"] is True
    rows = list_all(fixed, verified_since="all", limit=75)
    assert len(rows) == 800
    assert {r["id"] for r in rows} == {r["id"] for r in fixed.truth()}
    _, beyond = call(fixed, "/v1/receivables", verified_since="all", limit=75, page=99)
    assert beyond["data"] == []
    assert beyond["has_more"] is False


def test_limit_defaults_to_100_and_above_500_is_a_400_naming_it(fixed):
    _, body = call(fixed, "/v1/receivables", verified_since="all")
    assert len(body["data"]) == 100
    _, body = call(fixed, "/v1/receivables", verified_since="all", limit=500)
    assert len(body["data"]) == 500
    status, body = call(fixed, "/v1/receivables", verified_since="all", limit=501)
    assert status == 400
    assert body["error"]["param"] == "limit"


def test_verified_since_defaults_to_the_last_24_hours():
    now = dt.datetime.now(dt.timezone.utc)
    with Sandbox(receivables=400, seed=9, api_key=API_KEY) as sandbox:
        truth = sandbox.truth()
        ids = {r["id"] for r in list_all(sandbox, limit=500)}
    day_ago = now - dt.timedelta(days=1)
    margin = dt.timedelta(seconds=5)
    recent = {r["id"] for r in truth if parse_moment(r["updated_at"]) >= day_ago + margin}
    older = {r["id"] for r in truth if parse_moment(r["updated_at"]) < day_ago - margin}
    assert recent, "the data should straddle the 24-hour default"
    assert older, "the data should straddle the 24-hour default"
    assert recent <= ids
    assert not ids & older


def test_verified_since_is_inclusive_and_all_means_everything(fixed):
    truth = sorted(fixed.truth(), key=lambda r: r["updated_at"])
    middle = truth[len(truth) // 2]
    rows = list_all(fixed, verified_since=middle["updated_at"], limit=500)
    expected = {r["id"] for r in truth if r["updated_at"] >= middle["updated_at"]}
    assert {r["id"] for r in rows} == expected
    assert middle["id"] in expected
    assert len(list_all(fixed, verified_since="all", limit=500)) == len(truth)
    status, body = call(fixed, "/v1/receivables", verified_since="yesterday")
    assert status == 400
    assert body["error"]["param"] == "verified_since"


@pytest.mark.parametrize("name", ["vendor_id", "debtor_id", "status"])
def test_filters_return_exactly_the_matching_receivables(fixed, name):
    truth = fixed.truth()
    value_of = {
        "vendor_id": lambda r: r["vendor"]["id"],
        "debtor_id": lambda r: r["debtor"]["id"],
        "status": lambda r: r["status"],
    }[name]
    value = value_of(truth[0])
    rows = list_all(fixed, verified_since="all", limit=500, **{name: value})
    assert rows
    assert {r["id"] for r in rows} == {r["id"] for r in truth if value_of(r) == value}


def test_expand_and_history_limit(fixed):
    truth = {r["id"]: r for r in fixed.truth()}
    _, plain = call(fixed, "/v1/receivables", verified_since="all", limit=500)
    assert all("history" not in r and "metadata" not in r for r in plain["data"])

    _, default = call(
        fixed,
        "/v1/receivables",
        verified_since="all",
        limit=500,
        **{
            "expand[]": ["history", "metadata"],
        },
    )
    for row in default["data"]:
        assert row["history"] == truth[row["id"]]["history"][:10]  # the documented default
        assert row["metadata"] == truth[row["id"]]["metadata"]

    _, three = call(
        fixed,
        "/v1/receivables",
        verified_since="all",
        limit=500,
        history_limit=3,
        **{"expand[]": "history"},
    )
    assert all(r["history"] == truth[r["id"]]["history"][:3] for r in three["data"])
    status, body = call(fixed, "/v1/receivables", **{"expand[]": "vendors"})
    assert status == 400
    assert body["error"]["param"] == "expand[]"


def test_single_receivable_and_404(fixed):
    longest = max(fixed.truth(), key=lambda r: len(r["history"]))
    status, body = call(fixed, f"/v1/receivables/{longest['id']}", history_limit=500)
    assert status == 200
    assert body == longest
    _, short = call(fixed, f"/v1/receivables/{longest['id']}")
    assert short["history"] == longest["history"][:10]
    status, body = call(fixed, "/v1/receivables/rcv_does_not_exist")
    assert status == 404
    assert body["error"]["type"] == "not_found"


def test_max_history_limit_knob_rejects_larger_values_with_a_400(sandbox):
    sandbox.max_history_limit = 50
    status, body = call(sandbox, "/v1/receivables", history_limit=51, **{"expand[]": "history"})
    assert status == 400
    assert body["error"]["param"] == "history_limit"
    status, _ = call(sandbox, "/v1/receivables", history_limit=50, **{"expand[]": "history"})
    assert status == 200


def test_data_exercises_the_edges(fixed):
    truth = fixed.truth()
    assert {r["id"][:4] for r in truth} == {"rcv_", "rec_"}
    for name in ("due_date", "po_number", "estimated_next_update_at"):
        assert any(r[name] is None for r in truth), f"no null {name}"
    amounts = [r["amount_cents"] for r in truth]
    assert max(amounts) > 2**31
    assert min(amounts) < 0
    texts = [r["vendor"]["name"] for r in truth] + [r["portal_status"] for r in truth]
    assert any(not text.isascii() for text in texts)
    assert any('"' in text for text in texts)
    assert any("'" in text for text in texts)
    lengths = [len(r["history"]) for r in truth]
    assert min(lengths) == 0
    assert max(lengths) > 50
    for record in truth:
        stamps = [entry["changed_at"] for entry in record["history"]]
        assert stamps == sorted(stamps, reverse=True), "history must be newest first"
        if stamps:
            assert stamps[0] == record["updated_at"]


def test_the_same_seed_and_anchor_give_the_same_data():
    assert Dataset(300, 7, ANCHOR).truth() == Dataset(300, 7, ANCHOR).truth()
    assert Dataset(300, 7, ANCHOR).truth() != Dataset(300, 8, ANCHOR).truth()


def test_mutate_and_insert_change_the_truth_and_the_history(sandbox):
    before = {r["id"]: r for r in sandbox.truth()}
    updated = sandbox.mutate(5)
    inserted = sandbox.insert(2)
    after = {r["id"]: r for r in sandbox.truth()}
    assert len(after) == len(before) + 2
    for rid in updated:
        assert after[rid]["updated_at"] > before[rid]["updated_at"]
        assert len(after[rid]["history"]) == len(before[rid]["history"]) + 1
        assert after[rid]["history"][0]["changed_at"] == after[rid]["updated_at"]
    for rid in inserted:
        assert rid not in before
        assert after[rid]["history"] == []
    newest = list_all(sandbox, verified_since=min(after[r]["updated_at"] for r in updated))
    assert {r["id"] for r in newest} >= set(updated) | set(inserted)


@pytest.mark.parametrize("offset", [-300, 300])
def test_clock_offset_moves_the_date_header_new_stamps_and_the_24_hour_default(offset):
    with Sandbox(receivables=300, seed=3, api_key=API_KEY, clock_offset_seconds=offset) as box:
        api_now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)
        _, headers, _ = raw_get(box, "/v1/receivables?limit=1")
        date = email.utils.parsedate_to_datetime(headers["Date"])
        assert abs((date - api_now).total_seconds()) < 5
        (rid,) = box.mutate(1)
        stamped = parse_moment(box.dataset.records[rid]["updated_at"])
        assert abs((stamped - api_now).total_seconds()) < 5
        truth = box.truth()
        ids = {r["id"] for r in list_all(box, limit=500)}  # the default: the API's last 24 h
    day_ago = api_now - dt.timedelta(days=1)
    margin = dt.timedelta(seconds=5)
    assert {r["id"] for r in truth if parse_moment(r["updated_at"]) >= day_ago + margin} <= ids
    assert not ids & {r["id"] for r in truth if parse_moment(r["updated_at"]) < day_ago - margin}
    assert max(r["updated_at"] for r in truth) == box.dataset.records[rid]["updated_at"]


def test_verified_since_can_filter_on_a_hidden_verification_time():
    with Sandbox(
        receivables=200, seed=4, api_key=API_KEY, verified_since_field="verified_at"
    ) as box:
        old = sorted(box.truth(), key=lambda r: r["updated_at"])[:3]
        cut = box.dataset.next_stamp()
        assert list_all(box, verified_since=cut) == []
        box.verify([r["id"] for r in old])
        rows = list_all(box, verified_since=cut, expand=["history"])
        assert {r["id"] for r in rows} == {r["id"] for r in old}
        by_id = {r["id"]: r for r in old}
        for row in rows:
            before = by_id[row["id"]]
            assert row["updated_at"] == before["updated_at"]  # verifying changes nothing
            assert not any(key.startswith("_") for key in row)
        box.verified_since_field = "updated_at"
        assert list_all(box, verified_since=cut) == []


def test_mutate_can_backdate_a_change_and_paging_can_lie(sandbox):
    before = {r["id"]: r for r in sandbox.truth()}
    (rid,) = sandbox.mutate(1, backdate_seconds=90)
    record = sandbox.dataset.records[rid]
    age = dt.datetime.now(dt.timezone.utc) - parse_moment(record["updated_at"])
    assert 85 < age.total_seconds() < 120
    assert record["history"][0]["changed_at"] == record["updated_at"] > before[rid]["updated_at"]
    sandbox.omit_has_more = True
    sandbox.total_count_offset = 3
    _, body = call(sandbox, "/v1/receivables", verified_since="all", limit=100)
    assert "has_more" not in body
    assert body["total_count"] == 603
    sandbox.omit_has_more = False
    sandbox.always_has_more = True
    _, body = call(sandbox, "/v1/receivables", verified_since="all", limit=100, page=9)
    assert body["data"] == []
    assert body["has_more"] is True


def test_churn_keeps_changing_data_until_stopped(sandbox):
    before = {r["id"]: r["updated_at"] for r in sandbox.truth()}
    sandbox.start_churn(per_second=50, insert_ratio=0.2)
    time.sleep(0.6)
    sandbox.stop_churn()
    after = {r["id"]: r["updated_at"] for r in sandbox.truth()}
    changed = [rid for rid in before if after[rid] != before[rid]]
    assert changed
    assert len(after) > len(before)
    time.sleep(0.2)
    assert {r["id"]: r["updated_at"] for r in sandbox.truth()} == after


def test_fault_rate_limit_with_retry_after_in_both_forms(sandbox):
    sandbox.set_faults(rate_limit_rate=1.0, retry_after=7)
    status, headers, _ = raw_get(sandbox, "/v1/receivables")
    assert status == 429
    assert headers["Retry-After"] == "7"
    sandbox.set_faults(rate_limit_rate=1.0, retry_after=7, retry_after_format="http-date")
    status, headers, _ = raw_get(sandbox, "/v1/receivables")
    assert status == 429
    when = email.utils.parsedate_to_datetime(headers["Retry-After"])
    assert 3 <= (when - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 9


def test_fault_server_errors_truncation_html_and_missing_data(sandbox):
    sandbox.set_faults(error_rate=1.0)
    assert {raw_get(sandbox, "/v1/receivables")[0] for _ in range(12)} <= {500, 502, 503, 504}
    sandbox.set_faults(truncate_rate=1.0)
    status, _, body = raw_get(sandbox, "/v1/receivables")
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    sandbox.set_faults(html_rate=1.0)
    status, headers, body = raw_get(sandbox, "/v1/receivables")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    sandbox.set_faults(missing_data_rate=1.0)
    status, _, body = raw_get(sandbox, "/v1/receivables")
    assert status == 200
    assert "data" not in json.loads(body)
    sandbox.clear_faults()
    assert raw_get(sandbox, "/v1/receivables")[0] == 200


def test_fault_dropped_connection_and_latency(sandbox):
    sandbox.set_faults(drop_rate=1.0)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw_get(sandbox, "/v1/receivables")
    sandbox.set_faults(latency_ms=300)
    started = time.monotonic()
    assert raw_get(sandbox, "/v1/receivables")[0] == 200
    assert time.monotonic() - started >= 0.3


def test_rate_limit_rps_answers_429_when_the_budget_is_spent(sandbox):
    sandbox.set_faults(rate_limit_rps=2)
    statuses = [raw_get(sandbox, "/v1/receivables")[0] for _ in range(6)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses


def test_control_endpoints_serve_truth_mutations_faults_and_the_request_log(sandbox):
    def control(method: str, path: str, body: dict | None = None) -> dict:
        return control_call(sandbox, method, path, body)

    assert control("GET", "health") == {"ok": True, "receivables": 600}
    assert len(control("GET", "truth")["data"]) == 600
    changed = control("POST", "mutate", {"count": 3, "insert": 1})
    assert len(changed["updated"]) == 3
    assert len(changed["inserted"]) == 1
    assert control("GET", "health")["receivables"] == 601
    control("DELETE", "requests")
    call(sandbox, "/v1/receivables", limit=5)
    (logged,) = control("GET", "requests")["data"]
    assert logged["path"] == "/v1/receivables"
    assert logged["params"]["limit"] == ["5"]
    assert control("POST", "faults", {"error_rate": 1.0})["error_rate"] == 1.0
    assert raw_get(sandbox, "/v1/receivables")[0] >= 500
    control("POST", "faults", {})
    with pytest.raises(urllib.error.HTTPError) as unknown:
        control("POST", "faults", {"no_such_fault": 1})
    assert unknown.value.code == 400


def test_command_line_serves_until_terminated():
    proc = subprocess.Popen(
        [SANDBOX_CLI, "--port", "0", "--receivables", "50", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "50 receivables, seed 3" in line
        url = line.split("listening on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=30) as response:
            assert json.load(response) == {"ok": True, "receivables": 50}
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_command_line_refuses_a_non_loopback_host():
    proc = subprocess.run(
        [SANDBOX_CLI, "--host", "0.0.0.0", "--port", "0"],  # noqa: S104 (refused, not bound)
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "--allow-remote" in proc.stderr


def test_fault_trickle_sends_the_body_a_few_bytes_at_a_time(sandbox):
    sandbox.set_faults(trickle_rate=1.0, trickle_bytes=4000, trickle_interval_ms=50)
    started = time.monotonic()
    status, _, body = raw_get(sandbox, "/v1/receivables?limit=20")
    assert status == 200
    assert len(json.loads(body)["data"]) == 20  # complete, just slow
    assert time.monotonic() - started >= 0.05 * (len(body) // 4000)


def test_raw_values_are_answered_as_set(sandbox):
    rid = sandbox.truth()[0]["id"]
    history = [{"changed_at": "not a time", "changes": {"x": {"to": 1.5}}}]
    sandbox.set_raw(rid, amount_cents=1.5e20, updated_at=None, history=history)
    status, body = call(sandbox, f"/v1/receivables/{rid}")
    assert status == 200
    assert (body["amount_cents"], body["updated_at"], body["history"]) == (1.5e20, None, history)
    rows = list_all(sandbox, verified_since="all", limit=500)
    assert rid in {r["id"] for r in rows}, "the listing still finds it"


def test_same_instant_share_stamps_two_changes_of_one_field_together():
    plain = Dataset(300, 7, ANCHOR).truth()
    paired = Dataset(300, 7, ANCHOR, same_instant_share=0.2).truth()
    assert plain == Dataset(300, 7, ANCHOR, same_instant_share=0.0).truth()
    clashes = 0
    for record in paired:
        stamps = [entry["changed_at"] for entry in record["history"]]
        assert stamps == sorted(stamps, reverse=True)
        assert not record["history"] or stamps[0] == record["updated_at"]
        for stamp in {s for s in stamps if stamps.count(s) > 1}:
            same = [e["changes"] for e in record["history"] if e["changed_at"] == stamp]
            assert all("portal_status" in changes for changes in same)
            clashes += 1
    assert 30 <= clashes <= 90


# quirks: list answers wrong in what they say (kapwork_sandbox/quirks.py) -----------------


def _changed_receivable(sandbox: Sandbox, page_size: int, page: int) -> dict:
    """A receivable with at least two changes on list page `page`, as in the truth."""
    ordered = sorted(sandbox.truth(), key=lambda r: (r["updated_at"], r["id"]))
    return next(
        r for r in ordered[(page - 1) * page_size : page * page_size] if len(r["history"]) >= 2
    )


def _as_before_its_newest_change(record: dict) -> dict:
    newest, previous = record["history"][0], record["history"][1]
    older = {k: v for k, v in record.items() if k not in ("history", "metadata")}
    older.update({field: change["from"] for field, change in newest["changes"].items()})
    older["updated_at"] = previous["changed_at"]
    return older


def _page(sandbox: Sandbox, page: int, **params) -> dict:
    status, body = call(sandbox, "/v1/receivables", verified_since="all", page=page, **params)
    assert status == 200
    return body


@pytest.mark.parametrize("before", [True, False], ids=["older-first", "newer-first"])
def test_quirk_an_older_version_on_the_same_page(sandbox, before):
    record = _changed_receivable(sandbox, 50, page=3)
    sandbox.repeat_older_version(record["id"], before=before)
    body = _page(sandbox, 3, limit=50)
    rows = [row for row in body["data"] if row["id"] == record["id"]]
    older = _as_before_its_newest_change(record)
    current = {k: v for k, v in record.items() if k not in ("history", "metadata")}
    assert rows == ([older, current] if before else [current, older])
    assert len(body["data"]) == 51
    assert body["total_count"] == 600  # distinct receivables, as before
    assert older["updated_at"] < record["updated_at"]
    # expand[]=history: the older version carries the history it had then.
    body = _page(sandbox, 3, limit=50, **{"expand[]": "history", "history_limit": 100})
    histories = [row["history"] for row in body["data"] if row["id"] == record["id"]]
    assert histories == (
        [record["history"][1:], record["history"]]
        if before
        else [record["history"], record["history"][1:]]
    )


def test_quirk_an_older_version_on_another_page(sandbox):
    record = _changed_receivable(sandbox, 50, page=4)
    sandbox.repeat_older_version(record["id"], page=1)
    first, fourth = _page(sandbox, 1, limit=50), _page(sandbox, 4, limit=50)
    assert [r for r in first["data"] if r["id"] == record["id"]] == [
        _as_before_its_newest_change(record)
    ]
    assert [r["updated_at"] for r in fourth["data"] if r["id"] == record["id"]] == [
        record["updated_at"]
    ]
    sandbox.clear_quirks()
    assert record["id"] not in {r["id"] for r in _page(sandbox, 1, limit=50)["data"]}


def test_quirk_empty_pages_keep_has_more_transient_and_persistent(sandbox):
    full = _page(sandbox, 2, limit=100)
    sandbox.empty_pages(1, 2, times=1)
    for page in (1, 2):
        body = _page(sandbox, page, limit=100)
        assert (body["data"], body["has_more"], body["total_count"]) == ([], True, 600)
        assert _page(sandbox, page, limit=100)["data"]  # only the first time
    assert _page(sandbox, 2, limit=100) == full
    sandbox.empty_pages(3)
    assert [_page(sandbox, 3, limit=100)["data"] for _ in range(4)] == [[]] * 4
    assert _page(sandbox, 4, limit=100)["data"]


@pytest.mark.parametrize(
    ("kind", "field", "wire", "text"),
    [
        ("surrogate", ("vendor", "name"), b"\\ud83d", "\ud83d"),
        ("bytes", ("portal_status",), b"\xff\xfe", "\udcff\udcfe"),
    ],
)
def test_quirk_bad_text_in_an_otherwise_valid_answer(sandbox, kind, field, wire, text):
    record = _changed_receivable(sandbox, 100, page=1)
    sandbox.bad_text(record["id"], ".".join(field), kind)
    status, _, body = raw_get(sandbox, "/v1/receivables?verified_since=all&limit=100")
    assert status == 200
    assert body.count(wire) == 1
    with pytest.raises(ValueError):  # what a strict decoder makes of it
        msgspec.json.decode(body)
    decoded = json.loads(body.decode("utf-8", "surrogateescape"))  # JSON apart from that text
    (row,) = [r for r in decoded["data"] if r["id"] == record["id"]]
    value, expected = row, record
    for key in field:
        value, expected = value[key], expected[key]
    assert value == expected + text
    others = [r for r in decoded["data"] if r["id"] != record["id"]]
    assert len(others) == 99
    # The other receivables are exactly as without the quirk.
    sandbox.clear_quirks()
    clean = _page(sandbox, 1, limit=100)["data"]
    assert [r for r in clean if r["id"] != record["id"]] == others
    assert msgspec.json.decode(raw_get(sandbox, "/v1/receivables?verified_since=all")[2])


def test_quirks_from_the_control_endpoint(sandbox):
    record = _changed_receivable(sandbox, 100, page=2)
    spec = {
        "repeat_older_version": [{"id": record["id"], "page": 1}],
        "empty_pages": {"pages": [3], "times": 2},
        "bad_text": [{"id": record["id"], "field": "vendor.name", "kind": "surrogate"}],
    }
    answer = control_call(sandbox, "POST", "quirks", spec)
    assert answer["empty_pages"] == {"3": 2}
    assert answer["repeat_older_version"] == [{"id": record["id"], "page": 1, "before": True}]
    status, _, raw = raw_get(sandbox, "/v1/receivables?verified_since=all&limit=100&page=1")
    assert status == 200
    assert b"\\ud83d" in raw  # the older copy on page 1 carries the bad text too
    assert [r["updated_at"] for r in _page(sandbox, 1, limit=100)["data"][-1:]] == [
        _as_before_its_newest_change(record)["updated_at"]
    ]
    assert [len(_page(sandbox, 3, limit=100)["data"]) for _ in range(3)] == [0, 0, 100]
    assert control_call(sandbox, "POST", "quirks", {}) == {
        "repeat_older_version": [],
        "empty_pages": {},
        "bad_text": [],
    }
    with pytest.raises(urllib.error.HTTPError) as bad:
        control_call(sandbox, "POST", "quirks", {"bad_text": [{"id": record["id"], "kind": "x"}]})
    assert bad.value.code == 400
