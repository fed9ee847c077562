"""The demo's answers from the dbt models: a few printed lines and output/report.html.

`python scripts/report.py [WAREHOUSE.duckdb] [REPORT.html]` reads the models dbt built in the
`analytics` schema and writes a self-contained HTML page (plotly's JavaScript is inlined, so
it opens without a network). scripts/demo.py calls it after `dbt build`.
"""

from __future__ import annotations

import datetime as dt
import html
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

import duckdb
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "analytics"
BUCKETS = ("not yet due", "1-30", "31-60", "61-90", "over 90", "no due date")
COLORS = ("#4c9a6a", "#e0b040", "#e08a3c", "#d0603a", "#a83232", "#8c8c8c")


@dataclass
class Answers:
    """What the models say, read once from the warehouse."""

    as_of: dt.date
    aging: list[tuple[str, str, int, float]]  # currency, bucket, receivables, open amount
    debtors: list[tuple[str, str, int, float, float | None, float | None, float]]
    transitions: list[tuple[str, str, int]]  # from, to, count
    counts: dict[str, int]


def read(database: Path) -> Answers:
    with duckdb.connect(str(database), read_only=True) as db:
        db.sql(f"use {SCHEMA}")
        aging = db.sql(
            "select currency, aging_bucket, sum(open_receivables), sum(open_amount) "
            "from aging_by_debtor group by currency, aging_bucket, aging_bucket_order "
            "order by currency, aging_bucket_order"
        ).fetchall()
        debtors = db.sql(
            "select debtor_name, currency, paid_receivables, open_amount, "
            "median_days_to_paid, p90_days_to_paid, share_ever_disputed "
            "from debtor_payment_performance "
            "order by median_days_to_paid desc nulls last, debtor_name"
        ).fetchall()
        transitions = db.sql(
            "select from_status, to_status, count(*) from receivable_status_changes "
            "group by from_status, to_status order by count(*) desc, from_status, to_status"
        ).fetchall()
        counts = {
            model: db.sql(f"select count(*) from {model}").fetchone()[0]  # type: ignore[index]  # noqa: S608 (fixed names)
            for model in (
                "receivables_current",
                "receivable_status_changes",
                "receivable_status_spells",
                "debtor_payment_performance",
                "aging_by_debtor",
            )
        }
        as_of = db.sql("select current_date").fetchone()[0]  # type: ignore[index]
    return Answers(as_of, aging, debtors, transitions, counts)


def money(amount: float, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


def print_answers(answers: Answers, slowest: int = 5) -> None:
    """The short answer the demo prints: aging per currency, slowest payers, transitions."""
    print("Open amount by aging bucket (per currency, never summed across currencies):")
    for currency in sorted({row[0] for row in answers.aging}):
        rows = [r for r in answers.aging if r[0] == currency]
        total = sum(float(r[3]) for r in rows)
        print(f"  {currency}  total {total:>16,.2f}")
        for _, bucket, count, amount in rows:
            print(f"       {bucket:<12} {count:>5,} receivables  {float(amount):>16,.2f}")
    print()
    print(f"Slowest payers (median days from detection to PAID; top {slowest}):")
    for name, currency, paid, _, median, p90, disputed in answers.debtors[:slowest]:
        if median is None:
            continue
        print(
            f"  {name:<28} {currency}  median {median:5.1f} d   p90 {p90:5.1f} d   "
            f"{paid:>4} paid   {disputed:4.0%} ever disputed"
        )
    print()
    print("Status transitions:")
    for old, new, count in answers.transitions:
        print(f"  {old:>12} -> {new:<12} {count:>6,}")


def _aging_chart(answers: Answers) -> go.Figure:
    currencies = sorted({row[0] for row in answers.aging})
    figure = make_subplots(
        rows=1, cols=len(currencies), subplot_titles=currencies, horizontal_spacing=0.06
    )
    for column, currency in enumerate(currencies, start=1):
        amounts = {
            bucket: float(amount) for cur, bucket, _, amount in answers.aging if cur == currency
        }
        present = [b for b in BUCKETS if b in amounts]
        figure.add_trace(
            go.Bar(
                x=present,
                y=[amounts[b] for b in present],
                marker_color=[COLORS[BUCKETS.index(b)] for b in present],
                name=currency,
                hovertemplate=f"%{{x}}: {currency} %{{y:,.2f}}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        figure.update_yaxes(tickformat=",.0f", row=1, col=column)
    figure.update_layout(
        title="Open amount by aging bucket (days past due), per currency",
        height=420,
        margin={"t": 80, "b": 60, "l": 60, "r": 20},
    )
    return figure


def _days_to_pay_chart(answers: Answers) -> go.Figure:
    rows = [r for r in answers.debtors if r[4] is not None]
    rows.sort(key=lambda r: r[4] or 0)
    labels = [f"{name} ({currency})" for name, currency, *_ in rows]
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            y=labels,
            x=[r[4] for r in rows],
            orientation="h",
            name="median",
            marker_color="#3b6ea8",
        )
    )
    figure.add_trace(
        go.Bar(
            y=labels,
            x=[r[5] for r in rows],
            orientation="h",
            name="90th percentile",
            marker_color="#a8c3e0",
        )
    )
    figure.update_layout(
        title="Days from detection to PAID, by debtor",
        barmode="group",
        xaxis_title="days",
        height=max(360, 36 * len(rows) + 120),
        margin={"t": 60, "b": 50, "l": 220, "r": 20},
    )
    return figure


def _status_flow_chart(answers: Answers) -> go.Figure:
    statuses = sorted({s for old, new, _ in answers.transitions for s in (old, new)})
    # Each status appears twice (left: from, right: to) so cycles such as
    # DISPUTED -> PENDING -> APPROVED stay readable.
    labels = [f"{s} " for s in statuses] + [f" {s}" for s in statuses]
    figure = go.Figure(
        go.Sankey(
            node={"label": labels, "pad": 18, "thickness": 16},
            link={
                "source": [statuses.index(old) for old, _, _ in answers.transitions],
                "target": [
                    len(statuses) + statuses.index(new) for _, new, _ in answers.transitions
                ],
                "value": [count for *_, count in answers.transitions],
            },
        )
    )
    figure.update_layout(
        title="Status flow: every status change (from, left; to, right)",
        height=460,
        margin={"t": 60, "b": 20, "l": 20, "r": 20},
    )
    return figure


def write(answers: Answers, path: Path) -> Path:
    """A self-contained page: plotly's JavaScript inlined once, then the three charts."""
    figures = [_aging_chart(answers), _days_to_pay_chart(answers), _status_flow_chart(answers)]
    charts = [
        figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, figure in enumerate(figures)
    ]
    counts = "".join(
        f"<li><code>{html.escape(model)}</code>: {count:,} rows</li>"
        for model, count in answers.counts.items()
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Kapwork receivables report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 22px; }} .chart {{ margin: 18px 0 30px; }} li {{ margin: 2px 0; }}
</style>
</head>
<body>
<h1>Kapwork receivables, as of {answers.as_of:%Y-%m-%d}</h1>
<p>Built by <code>make demo</code> from the dbt models in <code>transform/</code>; amounts are
per currency. Rows per model:</p>
<ul>{counts}</ul>
{"".join(f'<div class="chart">{chart}</div>' for chart in charts)}
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def main(argv: t.Sequence[str] = ()) -> None:
    database = Path(argv[0]) if argv else ROOT / "output" / "warehouse.duckdb"
    report = Path(argv[1]) if len(argv) > 1 else ROOT / "output" / "report.html"
    answers = read(database)
    print_answers(answers)
    print(f"\nReport: {write(answers, report)}")


if __name__ == "__main__":
    main(sys.argv[1:])
