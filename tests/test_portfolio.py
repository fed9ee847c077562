"""kapwork_sandbox/portfolio.py: the realistic profile, and the edge profile left as it was."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from kapwork_sandbox import Sandbox
from kapwork_sandbox.data import Dataset, parse_moment
from kapwork_sandbox.portfolio import DEBTORS, HABITS, NEXT, RealisticDataset, build_dataset

ANCHOR = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
# Forward-only: every status change the realistic profile may make.
ALLOWED = {(old, new) for old, moves in NEXT.items() for new, _ in moves}


def status_changes(receivable: dict) -> list[tuple[str, str]]:
    return [
        (entry["changes"]["status"]["from"], entry["changes"]["status"]["to"])
        for entry in reversed(receivable["history"])
        if "status" in entry["changes"]
    ]


@pytest.fixture(scope="module")
def portfolio() -> RealisticDataset:
    dataset = build_dataset("realistic", 1500, seed=9, anchor=ANCHOR)
    assert isinstance(dataset, RealisticDataset)
    return dataset


def test_the_default_stays_the_edge_profile():
    with Sandbox(receivables=300, seed=4, anchor=ANCHOR) as sandbox:
        default = sandbox.dataset
    assert type(default) is Dataset
    assert json.dumps(default.truth()) == json.dumps(Dataset(300, 4, ANCHOR).truth())
    with pytest.raises(ValueError, match="realistic, edge"):
        build_dataset("other", 1, 1)


def test_amounts_are_invoice_sized_and_each_debtor_has_one_currency(portfolio):
    truth = portfolio.truth()
    assert all(15_000 <= r["amount_cents"] <= 40_000_000 for r in truth)
    currencies: dict[str, set[str]] = {}
    for receivable in truth:
        currencies.setdefault(receivable["debtor"]["id"], set()).add(receivable["currency"])
    assert all(len(found) == 1 for found in currencies.values())
    assert {c for found in currencies.values() for c in found} == {"USD", "EUR", "GBP", "CAD"}


def test_lifecycles_move_forward_and_fill_every_status_and_bucket(portfolio):
    truth = portfolio.truth()
    for receivable in truth:
        changes = status_changes(receivable)
        assert all(change in ALLOWED for change in changes), changes
        start = changes[0][0] if changes else receivable["status"]
        assert start == "PENDING"
        assert (changes[-1][1] if changes else start) == receivable["status"]
        invoiced = dt.date.fromisoformat(receivable["receivable_date"])
        assert 30 <= (dt.date.fromisoformat(receivable["due_date"]) - invoiced).days <= 90
        moments = [parse_moment(e["changed_at"]) for e in reversed(receivable["history"])]
        assert moments == sorted(moments)
        assert all(parse_moment(receivable["detected_at"]) <= m <= ANCHOR for m in moments)
    statuses = Counter(r["status"] for r in truth)
    assert set(statuses) == {"PENDING", "APPROVED", "PAID", "SOLD", "DISPUTED", "ACKNOWLEDGED"}
    assert statuses["PAID"] + statuses["SOLD"] > len(truth) / 2
    late = Counter()
    for receivable in truth:
        if receivable["status"] not in ("PAID", "SOLD"):
            days = (ANCHOR.date() - dt.date.fromisoformat(receivable["due_date"])).days
            late[min(4, max(0, (days + 29) // 30))] += 1
    assert set(late) == {0, 1, 2, 3, 4}  # not yet due, 1-30, 31-60, 61-90, over 90


def test_slow_debtors_pay_later_than_prompt_ones(portfolio):
    habit = {d["id"]: h for d, (_, _, h) in zip(portfolio.debtors, DEBTORS, strict=True)}
    days: dict[str, list[float]] = {name: [] for name in HABITS}
    for receivable in portfolio.truth():
        for entry in receivable["history"]:
            if entry["changes"].get("status", {}).get("to") == "PAID":
                delay = parse_moment(entry["changed_at"]) - parse_moment(receivable["detected_at"])
                days[habit[receivable["debtor"]["id"]]].append(delay.days)
    median = {name: sorted(v)[len(v) // 2] for name, v in days.items()}
    assert median["prompt"] < median["steady"] < median["slow"]


def test_mutate_and_insert_follow_the_lifecycle():
    dataset = build_dataset("realistic", 400, seed=2, anchor=ANCHOR)
    before = {r["id"]: r["status"] for r in dataset.truth()}
    for round_ in range(5):
        dataset.mutate(200, seed=round_)
    for receivable in dataset.truth():
        assert all(change in ALLOWED for change in status_changes(receivable))
        if before[receivable["id"]] in ("PAID", "SOLD"):
            assert receivable["status"] == before[receivable["id"]]
    new = dataset.insert(5)
    assert all(dataset.records[rid]["status"] == "PENDING" for rid in new)
    assert all(dataset.records[rid]["history"] == [] for rid in new)


@pytest.mark.parametrize("profile", ["realistic", "edge"])
def test_command_line_serves_either_profile(profile):
    cli = str(Path(sys.executable).with_name("kapwork-sandbox"))
    args = [cli, "--port", "0", "--receivables", "30", "--seed", "3"]
    proc = subprocess.Popen(
        [*args, "--profile", profile] if profile == "edge" else args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"30 receivables, seed 3, {profile} profile" in line
        url = line.split("listening on ", 1)[1].split()[0]
        with urllib.request.urlopen(f"{url}/_sandbox/truth", timeout=10) as response:
            truth = json.load(response)["data"]
        # the same receivables as the Python class of that profile gives for the seed (ids
        # do not depend on the anchor)
        assert len(truth) == 30
        expected = build_dataset(profile, 30, seed=3).truth()
        assert [r["id"] for r in truth] == [r["id"] for r in expected]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_command_line_rejects_an_unknown_profile():
    cli = str(Path(sys.executable).with_name("kapwork-sandbox"))
    proc = subprocess.run(
        [cli, "--profile", "huge"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert "invalid choice: 'huge'" in proc.stderr
    assert "Traceback" not in proc.stderr
