"""The quarterly feedback report of one IPS programme, as the knowledge centre sends it (seeds/001): Tables 1-4,
Figures 1-3 and the fidelity table, for the programme's two most recent calendar years, beside the national
average; then where the programme stands in the national spread.

Privacy: every query below is for this programme or for national aggregates only. Which national figures may be
shown is decided once, by the disclosure rule in the marts (dbt macro ``disclose``): a figure the marts leave NULL
is left out here with a note, never worked out again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import duckdb

from pipelines.reporting import numbers, svg
from pipelines.reporting.common import Privacy, ReportError, Shared, render
from pipelines.warehouse import rows

# the seed report's tables, by metric code (labels and formats come from the metrics seed)
TABLE_1 = ["caseload", "new_clients", "fte", "clients_per_fte", "caseload_growth"]
TABLE_2 = ["paid_work_rate", "paid_work_uwv_rate", "education_rate", "uwv_norm_rate", "paid_work_growth",
           "education_growth"]  # fmt: skip
TABLE_3 = ["successful_outflow_rate", "unsuccessful_outflow_rate", "successful_outflow_growth",
           "unsuccessful_outflow_growth"]  # fmt: skip
TABLE_4 = ["avg_paid_work_rate", "avg_education_rate", "avg_successful_outflow_rate", "avg_unsuccessful_outflow_rate"]

PERCENT_NOTE = "Percentages zijn ten opzichte van de totale caseload."

# a growth figure and the count it is the growth of
GROWTH_OF = {
    "caseload_growth": "caseload",
    "paid_work_growth": "paid_work",
    "education_growth": "education",
    "successful_outflow_growth": "outflow_successful",
    "unsuccessful_outflow_growth": "outflow_unsuccessful",
}


@dataclass
class Notes:
    """Numbered footnotes: the same text gets the same number."""

    texts: list[str] = field(default_factory=list)

    def mark(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


@dataclass
class Cell:
    text: str
    note: int | None = None


@dataclass
class Row:
    year: int | None
    label: str
    cells: list[Cell]
    kind: str = "quarter"  # quarter | average | missing
    note: int | None = None


def programs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    return rows(
        con,
        "select program_id, any_value(program_name order by year desc, quarter desc) as program_name, "
        "max(period_code) as latest_period from marts.ips_quarterly group by program_id order by program_id",
    )


def _format(metric: str, formats: dict, averaged: bool) -> str:
    code = formats[metric]["number_format"]
    return "0.00" if averaged and code == "0" else code  # a mean of counts is no count


def _growth_reason(row: dict, previous: dict | None, count: str) -> str:
    if row.get(count) is None:
        return "Groei niet te berekenen: het aantal is voor dit kwartaal niet ingevuld."
    if row["follows_gap"]:
        return (
            "Groei niet te berekenen: het kwartaal ervoor is niet ontvangen "
            "(groei is steeds ten opzichte van het direct voorafgaande kwartaal)."
        )
    if previous is None:
        return "Groei niet te berekenen: dit is het eerste kwartaal dat het programma rapporteerde."
    if previous.get(count) is None:
        return "Groei niet te berekenen: het aantal van het kwartaal ervoor is niet ingevuld."
    return "Groei niet te berekenen: het aantal in het kwartaal ervoor was 0, en groei ten opzichte van 0 bestaat niet."


def _previous(all_rows: dict[tuple[int, int], dict], year: int, quarter: int) -> dict | None:
    return all_rows.get((year, quarter - 1) if quarter > 1 else (year - 1, 4))


class IpsReport:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        program_id: str,
        years: list[int] | None,
        privacy: Privacy,
        shared: Shared | None = None,
    ):
        self.con, self.program_id, self.privacy = con, program_id, privacy
        self.shared = shared or Shared(con)
        found = self.shared.own(
            "select * from marts.ips_quarterly where {own} order by year, quarter", "program_id", program_id
        )
        if not found:
            known = ", ".join(p["program_id"] for p in programs(con)) or "none"
            raise ReportError(f"programme {program_id!r}: not in marts.ips_quarterly (programmes: {known})")
        self.years = sorted(years) if years else sorted({r["year"] for r in found})[-2:]  # the two most recent
        missing = [y for y in self.years if y not in {r["year"] for r in found}]
        if missing:
            raise ReportError(f"programme {program_id!r}: no quarter reported in {', '.join(map(str, missing))}")
        self.program_name = found[-1]["program_name"]
        self.by_quarter = {(r["year"], r["quarter"]): r for r in found}
        self.formats = self.shared.formats
        self.notes = Notes()
        placeholders = ", ".join("?" * len(self.years))
        self.national = {
            (r["year"], r["quarter"]): r
            for r in self.shared.rows(
                f"select * from marts.ips_quarterly_national where year in ({placeholders})", self.years
            )
        }
        self.yearly = {
            r["year"]: r
            for r in self.shared.own("select * from marts.ips_yearly where {own}", "program_id", program_id)
            if r["year"] in self.years
        }
        self.yearly_national = {
            r["year"]: r
            for r in self.shared.rows(
                f"select * from marts.ips_yearly_national where year in ({placeholders})", self.years
            )
        }
        # the quarters of the report: every quarter of its years that the programme or the nation has
        self.quarters = sorted(
            {k for k in self.by_quarter if k[0] in self.years} | {k for k in self.national if k[0] in self.years}
        )

    # ---- helpers -------------------------------------------------------------------------------------------
    def label(self, year: int, quarter: int) -> str:
        row = self.by_quarter.get((year, quarter)) or self.national[(year, quarter)]
        return row["period_label"]

    @staticmethod
    def national_shown(row: dict | None) -> bool:
        """Whether a national row of the marts has figures (the disclosure rule left them in)."""
        return row is not None and not row["national_suppressed"]

    def suppressed_note(self) -> int:
        return self.notes.mark(
            "Landelijk cijfer weggelaten: te weinig programma's rapporteerden, zodat een programma uit het landelijke "
            "en het eigen cijfer dat van een ander zou kunnen afleiden."
        )

    def cell(self, value, metric: str, averaged: bool = False, note: int | None = None) -> Cell:
        return Cell(numbers.formatted(value, _format(metric, self.formats, averaged)), note)

    # ---- tables 1-3 ----------------------------------------------------------------------------------------
    def program_rows(self, metrics: list[str]) -> list[Row]:
        out = []
        for year in self.years:
            for y, q in [k for k in self.quarters if k[0] == year]:
                row = self.by_quarter.get((y, q))
                if row is None:
                    note = self.notes.mark("Dit kwartaal is niet ontvangen.")
                    out.append(Row(year, self.label(y, q), [Cell("niet ontvangen")], "missing", note))
                    continue
                cells = []
                for m in metrics:
                    value, note = row[m], None
                    if value is None and m in GROWTH_OF:
                        note = self.notes.mark(_growth_reason(row, _previous(self.by_quarter, y, q), GROWTH_OF[m]))
                    cells.append(self.cell(value, m, note=note))
                gap = self.notes.mark("Volgt op een kwartaal dat niet is ontvangen.") if row["follows_gap"] else None
                out.append(Row(year, row["period_label"], cells, note=gap))
            yearly = self.yearly.get(year)
            cells = []
            for m in metrics:
                value = yearly[f"avg_{m}"] if yearly else None
                note = None
                if value is None and m in GROWTH_OF:
                    note = self.notes.mark("Gemiddelde leeg: geen kwartaal van dit jaar heeft een groeicijfer.")
                cells.append(self.cell(value, m, averaged=True, note=note))
            out.append(Row(year, "Gemiddeld", cells, "average"))
        return out

    def national_rows(self, metrics: list[str]) -> list[Row]:
        out = []
        for year in self.years:
            for y, q in [k for k in self.quarters if k[0] == year]:
                row = self.national.get((y, q))
                if not self.national_shown(row):
                    out.append(Row(year, self.label(y, q), [Cell("")] * len(metrics), note=self.suppressed_note()))
                    continue
                cells = []
                for m in metrics:
                    note = None
                    if row[m] is None and m in GROWTH_OF:
                        note = self.notes.mark(
                            "Landelijke groei leeg: te weinig programma's hadden voor dit kwartaal een groeicijfer."
                        )
                    elif row[m] is None:
                        note = self.suppressed_note()
                    cells.append(self.cell(row[m], m, averaged=True, note=note))
                out.append(Row(year, row["period_label"], cells))
            yearly = self.yearly_national.get(year)
            if not self.national_shown(yearly):
                out.append(Row(year, "Gemiddeld", [Cell("")] * len(metrics), "average", self.suppressed_note()))
            else:
                out.append(Row(year, "Gemiddeld", [self.cell(yearly[f"avg_{m}"], m, True) for m in metrics], "average"))
        return out

    def table(self, number: int, title: str, metrics: list[str], footer: list[str]) -> dict:
        return {
            "number": number,
            "title": title,
            "headers": [self.formats[m]["label_nl"] for m in metrics],
            "program": self.program_rows(metrics),
            "national": self.national_rows(metrics),
            "footer": footer,
        }

    def table_4(self) -> dict:
        headers = ["Totale caseload"] + [f"Gemiddeld {self.formats[m[4:]]['label_nl']}" for m in TABLE_4]
        program, national = [], []
        for year in self.years:
            row = self.yearly.get(year)
            program.append(
                Row(year, str(year), [Cell(numbers.count(row["total_caseload"]) if row else "")]
                    + [self.cell(row[m] if row else None, m[4:], True) for m in TABLE_4], "year")
            )  # fmt: skip
            nat = self.yearly_national.get(year)
            if not self.national_shown(nat):
                national.append(Row(year, str(year), [Cell("")] * len(headers), "year", self.suppressed_note()))
            else:
                national.append(
                    Row(year, str(year), [Cell(numbers.number(nat["total_caseload"], 2))]
                        + [self.cell(nat[m], m[4:], True) for m in TABLE_4], "year")
                )  # fmt: skip
        return {"number": 4, "title": "Caseload, plaatsings- en uitstroomcijfers per kalenderjaar", "headers": headers,
                "program": program, "national": national}  # fmt: skip

    # ---- figures -------------------------------------------------------------------------------------------
    def series(self, metric: str) -> tuple[list[float | None], list[float | None]]:
        own, nat = [], []
        for key in self.quarters:
            row = self.by_quarter.get(key)
            own.append(row[metric] if row else None)
            n = self.national.get(key)
            nat.append(n[metric] if self.national_shown(n) else None)
        return own, nat

    def figures(self) -> list[dict]:
        categories = [self.label(*k) for k in self.quarters]
        marked = {i for i, k in enumerate(self.quarters) if (self.by_quarter.get(k) or {}).get("follows_gap")}
        gap = "na een ontbrekend kwartaal"

        def against_nation(title: str, metric: str, tick) -> svg.Chart:
            own, nat = self.series(metric)
            return svg.Chart(
                title, categories,
                [svg.Series(self.program_name, own), svg.Series("Landelijk gemiddelde", nat, dashed=True)],
                tick, marked=marked, mark_note=gap,
            )  # fmt: skip

        fig1 = against_nation("Caseload per kwartaal", "caseload", lambda v: numbers.number(v, 0))
        work, work_nat = self.series("paid_work_rate")
        edu, edu_nat = self.series("education_rate")
        fig2 = svg.Chart(
            "Plaatsingen in werk en opleiding (% van de caseload), met de normen voor betaald werk", categories,
            [svg.Series("Programma: betaald werk", work), svg.Series("Landelijk: betaald werk", work_nat, True),
             svg.Series("Programma: opleiding", edu), svg.Series("Landelijk: opleiding", edu_nat, True)],
            lambda v: numbers.percent(v, 0), thresholds=self.employment_thresholds(), marked=marked, mark_note=gap,
        )  # fmt: skip
        fig3 = against_nation(
            "Percentage succesvolle uitstroom, programma en landelijk", "successful_outflow_rate",
            lambda v: numbers.percent(v, 0),
        )  # fmt: skip
        return [
            {"number": 1, "title": "Overzicht caseload per kwartaal", "svg": svg.line_chart(fig1)},
            {"number": 2, "title": "Plaatsingen in werk en opleiding, met de normen voor betaald werk",
             "svg": svg.line_chart(fig2), "caption": self.threshold_caption()},
            {"number": 3, "title": "Percentage succesvolle uitstroom programma vs landelijk",
             "svg": svg.line_chart(fig3)},
        ]  # fmt: skip

    @cached_property
    def benchmarks(self) -> list[dict]:
        """The published thresholds for paid work, drawn on Figure 2 and named in its caption."""
        return self.shared.rows(
            "select * from reference.benchmarks where metric = 'paid_work_rate' and lower_bound > 0 "
            "order by lower_bound"
        )

    def employment_thresholds(self) -> list[svg.Threshold]:
        return [svg.Threshold(b["lower_bound"], f"{b['label_nl']} {numbers.percent(b['lower_bound'], 0)}")
                for b in self.benchmarks]  # fmt: skip

    def threshold_caption(self) -> str:
        """'Normlijnen voor betaald werk: Minimaal 31%, ... (IPS Employment Center); Doel IPS Grow (VK) 40% (IPS Grow
        (UK)).'"""
        sets: dict[str, list[str]] = {}
        for b in self.benchmarks:
            name = re.split(r"[,:]", b["source"])[0]
            sets.setdefault(name, []).append(f"{b['label_nl']} {numbers.percent(b['lower_bound'], 0)}")
        return "Normlijnen voor betaald werk: " + "; ".join(f"{', '.join(v)} ({k})" for k, v in sets.items()) + "."

    # ---- fidelity ------------------------------------------------------------------------------------------
    def fidelity(self) -> dict | None:
        items = self.shared.own(
            "select * from marts.fidelity_items where {own} and is_latest_assessment order by sort_order",
            "program_id",
            self.program_id,
        )
        if not items:
            return None
        totals = self.shared.own(
            "select * from marts.fidelity_totals where {own} and is_latest_assessment", "program_id", self.program_id
        )[0]
        national = {scale: totals[f"national_mean_{scale}"] for scale in ("total_ips_a", "total_ips_o")}
        shown = national["total_ips_a"] is not None or national["total_ips_o"] is not None
        sections: dict[str, list] = {}
        for item in items:
            sections.setdefault(item["section"], []).append(item)
        return {
            "date": totals["assessment_date"],
            "sections": sections,
            "totals": totals,
            "national": national if shown else None,
            "note": None if shown else self.suppressed_note(),
        }

    # ---- spread --------------------------------------------------------------------------------------------
    def spread(self) -> dict:
        year, quarter = max(k for k in self.by_quarter if k[0] in self.years)
        bands = {
            (b["metric"], b["band"]): b["label_nl"] for b in self.shared.rows("select * from reference.benchmarks")
        }
        out = []
        # the programme's latest quarter in the report's years, said in SQL so that a whole set reads it at once
        for r in self.shared.own(
            "select l.* from marts.ips_benchmark_long l join reference.metrics m using (metric) "
            "where {own} and l.year * 4 + l.quarter = (select max(x.year * 4 + x.quarter) from marts.ips_quarterly x "
            "where x.program_id = l.program_id and x.year <= ?) order by m.sort_order",
            "program_id",
            self.program_id,
            (max(self.years),),
        ):
            fmt = _format(r["metric"], self.formats, averaged=True)
            suppressed = r["national_suppressed"]
            out.append({
                "label": r["metric_label"],
                "value": numbers.formatted(r["value"], self.formats[r["metric"]]["number_format"]),
                "rank": f"{r['rank']} van {r['n_programs']}" if r["rank"] is not None else "",
                "mean": "" if suppressed else numbers.formatted(r["national_value"], fmt),
                "p25": "" if suppressed else numbers.formatted(r["national_p25"], fmt),
                "median": "" if suppressed else numbers.formatted(r["national_median"], fmt),
                "p75": "" if suppressed else numbers.formatted(r["national_p75"], fmt),
                "band": bands.get((r["metric"], r["benchmark_band"]), ""),
                "note": self.suppressed_note() if suppressed else None,
            })  # fmt: skip
        return {"period": self.label(year, quarter), "rows": out}

    def funnel(self) -> dict | None:
        """Paid work in the funnel of the programme's latest quarter: its own dot highlighted and named, every other
        programme's dot unnamed (no other programme is named in this report), and one sentence on its signal."""
        from pipelines.reporting.national import SIGNALS, funnel_svg

        year, quarter = max(k for k in self.by_quarter if k[0] in self.years)
        code = self.by_quarter[(year, quarter)]["period_code"]
        rows = self.shared.rows(
            "select program_id, denominator, rate, national_rate, signal, period_label, metric_label, dots_disclosed "
            "from marts.ips_funnel where period_code = ? and metric = 'paid_work_rate' order by program_id",
            (code,),
        )
        own = next((r for r in rows if r["program_id"] == self.program_id), None)
        if own is None:
            return None
        if not own["dots_disclosed"]:  # too few programmes to show the others' dots: the limits and its own dot
            rows = [own]
        title = f"{own['metric_label']}, {own['period_label']}: uw programma (oranje) tussen de programma's"
        chart = funnel_svg(rows, title, own=self.program_id, named=False)
        if chart is None:
            return {"period": own["period_label"], "svg": None, "sentence": None, "note": self.suppressed_note()}
        sentence = (
            f"In {own['period_label']} had uw programma {numbers.percent(own['rate'], 1)} betaald werk bij "
            f"{numbers.count(own['denominator'])} cliënten: {SIGNALS[own['signal']]} rond het landelijke percentage "
            f"van {numbers.percent(own['national_rate'], 1)}."
        )
        return {"period": own["period_label"], "svg": chart, "sentence": sentence, "note": None}

    def html(self) -> str:
        context = {
            "program_id": self.program_id,
            "program_name": self.program_name,
            "years": self.years,
            "published": self.shared.published,
            "tables": [
                self.table(1, "Caseload en capaciteit IPS trajectbegeleiding", TABLE_1, []),
                self.table(2, "Werk en opleiding uitkomsten", TABLE_2, [PERCENT_NOTE]),
                self.table(3, "Uitstroom succesvol en onsuccesvol", TABLE_3, [
                    PERCENT_NOTE,
                    "Succesvolle uitstroom = uitstroom door betaald werk of opleiding; onsuccesvolle uitstroom = "
                    "uitstroom zonder betaald werk of opleiding.",
                ]),
            ],
            "table_4": self.table_4(),
            "figures": self.figures(),
            "fidelity": self.fidelity(),
            "spread": self.spread(),
            "funnel": self.funnel(),
        }  # fmt: skip
        context["notes"] = self.notes.texts  # after everything that adds notes
        return render("ips.html.j2", **context)


def ips_report(
    con: duckdb.DuckDBPyConnection, program_id: str, privacy: Privacy, years: list[int] | None = None
) -> str:
    return IpsReport(con, program_id, years, privacy).html()
