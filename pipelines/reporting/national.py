"""The knowledge centre's national overview of one period (a quarter, 2018-K3, or a year, 2018): per rate a funnel
plot of every programme (marts.ips_funnel) and a table with each programme's rate, denominator, signal and change
since the period before; then the period's submissions and the fidelity bands.

This report is for the knowledge centre and names programmes. A programme's own report shows only its own dot named
(pipelines/reporting/ips.py). National rates and limits are what the marts give (the disclosure rule).
"""

from __future__ import annotations

import duckdb

from pipelines.reporting import numbers, svg
from pipelines.reporting.common import ReportError, Shared, render

SIGNALS = {  # in words, as the table and the programme's report say them
    "above_998": "boven de 99,8%-grens",
    "above_95": "boven de 95%-grens",
    "within": "binnen de grenzen",
    "below_95": "onder de 95%-grens",
    "below_998": "onder de 99,8%-grens",
}


def periods(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """period_type -> the latest period_code of marts.ips_funnel (the latest quarter and the latest year)."""
    found = con.execute(
        "select period_type, max(period_start), arg_max(period_code, period_start) from marts.ips_funnel group by 1"
    ).fetchall()
    return {kind: code for kind, _, code in found}


def previous_code(con: duckdb.DuckDBPyConnection, period_code: str) -> str | None:
    """The period before: the quarter before a quarter, the year before a year (None when it has no rows)."""
    found = con.execute(
        "select period_code from marts.ips_funnel where period_type = (select any_value(period_type) "
        "from marts.ips_funnel where period_code = ?) and period_start < (select any_value(period_start) "
        "from marts.ips_funnel where period_code = ?) order by period_start desc limit 1",
        [period_code, period_code],
    ).fetchall()
    return found[0][0] if found else None


def points(rows: list[dict], own: str | None = None, named: bool = True) -> list[svg.FunnelPoint]:
    return [
        svg.FunnelPoint(
            float(r["denominator"]),
            float(r["rate"]),
            r["program_id"] if named or r["program_id"] == own else None,
            highlight=r["program_id"] == own,
        )
        for r in rows
    ]


def funnel_svg(rows: list[dict], title: str, own: str | None = None, named: bool = True) -> str | None:
    """The funnel plot of one period and metric (None where the disclosure rule gave no national rate)."""
    national = rows[0]["national_rate"] if rows else None
    if national is None:
        return None
    return svg.funnel_plot(title, points(rows, own, named), float(national), lambda v: numbers.percent(v, 0))


class NationalReport:
    def __init__(self, con: duckdb.DuckDBPyConnection, period_code: str | None, shared: Shared | None = None):
        self.con = con
        self.shared = shared or Shared(con)
        if period_code is None:
            period_code = periods(con).get("quarter")
        rows = self.shared.rows(
            "select f.* from marts.ips_funnel f join reference.metrics m using (metric) "
            "where f.period_code = ? order by m.sort_order, f.program_name, f.program_id",
            (period_code,),
        )
        if not rows:
            raise ReportError(f"period {period_code!r}: no programme reported it (e.g. 2018-K3 or 2018)")
        self.period_code = period_code
        self.period_type = rows[0]["period_type"]
        self.period_label = rows[0]["period_label"]
        self.by_metric: dict[str, list[dict]] = {}
        for r in rows:
            self.by_metric.setdefault(r["metric"], []).append(r)
        before = previous_code(con, period_code)
        self.previous = {
            (r["program_id"], r["metric"]): r["rate"]
            for r in (self.shared.rows("select * from marts.ips_funnel where period_code = ?", (before,)) if before
                      else [])
        }  # fmt: skip
        self.previous_label = before

    def metric_sections(self) -> list[dict]:
        out = []
        for metric, rows in self.by_metric.items():
            label = rows[0]["metric_label"]
            table = []
            for r in sorted(rows, key=lambda r: (-(r["rate"] or 0), r["program_id"])):
                before = self.previous.get((r["program_id"], metric))
                table.append({
                    "name": r["program_name"], "code": r["program_id"],
                    "rate": numbers.percent(r["rate"], 1), "denominator": numbers.count(r["denominator"]),
                    "numerator": numbers.count(r["numerator"]),
                    "signal": SIGNALS.get(r["signal"], "geen landelijk cijfer"), "signal_code": r["signal"] or "",
                    "change": numbers.points(r["rate"] - before, 1) if before is not None else "",
                })  # fmt: skip
            national = rows[0]["national_rate"]
            out.append({
                "metric": metric, "label": label,
                "svg": funnel_svg(rows, f"{label}, {self.period_label}: elk programma tegen zijn caseload"),
                "national": numbers.percent(national, 1) if national is not None else None,
                "n_programs": rows[0]["n_programs"], "rows": table,
                "outside": sum(r["signal"] not in (None, "within") for r in rows),
            })  # fmt: skip
        return out

    def submissions(self) -> list[dict]:
        if self.period_type == "quarter":
            return self.shared.rows(
                "select program_id, status, file_name, versions from marts.ips_submissions where period_code = ? "
                "order by status desc, program_id",
                (self.period_code,),
            )
        return self.shared.rows(
            "select program_id, count(*) filter (where status = 'received') as received, "
            "count(*) filter (where status = 'resubmitted') as resubmitted, "
            "count(*) filter (where status = 'missing') as missing from marts.ips_submissions "
            "where cast(year as varchar) = ? group by program_id order by missing desc, program_id",
            (self.period_code,),
        )

    def fidelity(self) -> list[dict]:
        return self.shared.rows(
            "select program_id, assessment_date, total_ips_a, max_ips_a, band_ips_a_label, total_ips_o, max_ips_o, "
            "band_ips_o_label from marts.fidelity_totals where is_latest_assessment order by program_id"
        )

    def html(self) -> str:
        return render(
            "national.html.j2",
            period_code=self.period_code,
            period_label=self.period_label,
            period_type=self.period_type,
            previous=self.previous_label,
            metrics=self.metric_sections(),
            submissions=self.submissions(),
            fidelity=self.fidelity(),
            published=self.shared.published,
        )
