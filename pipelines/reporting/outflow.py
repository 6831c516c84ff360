"""The yearly outflow report of one day-care provider (seeds/000): where participants went in its latest year,
beside the year before: totals, shares by destination and by group, paid work with and without job coach,
education, per location, movement on the participation ladder, trajectory duration.

Privacy: provider-wide counts are exact, as in the published report; per-location counts below
``Privacy.min_count`` show as '<5', and so many more that none can be worked back from the exact totals.
"""

from __future__ import annotations

import duckdb

from pipelines.reporting import numbers, svg
from pipelines.reporting.common import Privacy, ReportError, Shared, render
from pipelines.warehouse import rows

# the participation ladder (participatieladder) the destinations are placed on (seed destinations.ladder_step)
LADDER = {
    1: "Geïsoleerd",
    2: "Sociale contacten buiten de deur",
    3: "Deelname georganiseerde activiteiten",
    4: "Onbetaald werk",
    5: "Betaald werk met ondersteuning",
    6: "Betaald werk",
}
GROUP_COLOURS = {"regulier": "#0072B2", "thuis": "#E69F00", "andere_dagbesteding": "#009E73", "overige": "#999999"}
SUMMARY_COUNTS = ["total_outflow", "paid_work_count", "supported_work_count", "unsupported_work_count",
                  "education_count", "regular_count"]  # fmt: skip
SUMMARY_SHARES = ["regular_share", "paid_work_share", "supported_work_share", "education_share", "other_daycare_share",
                  "home_share", "other_share"]  # fmt: skip


def suppressed_cells(matrix: list[list[int]], threshold: int) -> list[list[bool]]:
    """Which cells of a table (rows: locations, columns: groups) to hide, when every row and column total is
    published exactly: the cells below ``threshold``, and then, wherever a row or column would hide exactly one
    cell (which its total minus the others would give away), its smallest shown cell too, until none does."""
    hidden = [[value < threshold for value in row] for row in matrix]
    lines = [[(i, j) for j in range(len(row))] for i, row in enumerate(matrix)]
    if matrix:
        lines += [[(i, j) for i in range(len(matrix))] for j in range(len(matrix[0]))]
    changed = True
    while changed:
        changed = False
        for line in lines:
            shown = [(matrix[i][j], i, j) for i, j in line if not hidden[i][j]]
            if len(line) > 1 and len(line) - len(shown) == 1 and shown:
                _, i, j = min(shown)
                hidden[i][j] = changed = True
    return hidden


def providers(con: duckdb.DuckDBPyConnection) -> list[dict]:
    return rows(con, "select provider, max(year) as latest_year from marts.outflow_summary group by 1 order by 1")


class OutflowReport:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        provider: str,
        year: int | None,
        privacy: Privacy,
        shared: Shared | None = None,
    ):
        self.con, self.provider, self.privacy = con, provider, privacy
        self.shared = shared or Shared(con)
        summary = self.shared.own("select * from marts.outflow_summary where {own}", "provider", provider)
        years = [r["year"] for r in summary]
        if not years:
            known = ", ".join(p["provider"] for p in providers(con)) or "none"
            raise ReportError(f"provider {provider!r}: not in marts.outflow_summary (providers: {known})")
        self.year = year if year is not None else max(years)
        if self.year not in years:
            raise ReportError(f"provider {provider!r}: no outflow in {self.year} (years: {sorted(years)})")
        self.previous = self.year - 1 if self.year - 1 in years else None
        self.years = [y for y in (self.previous, self.year) if y is not None]
        self.formats = dict(self.shared.formats)  # with a line of this report's own
        self.formats["unsupported_work_count"] = {"label_nl": "Uitstroom naar betaald werk zonder jobcoach",
                                                  "number_format": "0"}  # fmt: skip
        self.summary = {
            r["year"]: {**r, "unsupported_work_count": r["paid_work_count"] - r["supported_work_count"]}
            for r in summary
        }

    def summary_table(self) -> list[dict]:
        this, before = self.summary[self.year], self.summary.get(self.previous)
        out = []
        for metric in SUMMARY_COUNTS + SUMMARY_SHARES + ["median_trajectory_days"]:
            fmt = self.formats[metric]["number_format"]
            change = ""
            if before is not None and this[metric] is not None and before[metric] is not None:
                diff = this[metric] - before[metric]
                change = numbers.points(diff) if metric in SUMMARY_SHARES else numbers.signed(diff)
            out.append({
                "label": self.formats[metric]["label_nl"],
                "before": numbers.formatted(before[metric], fmt) if before else "",
                "this": numbers.formatted(this[metric], fmt),
                "change": change,
            })  # fmt: skip
        return out

    def groups(self) -> tuple[list[dict], str]:
        found = self.shared.own(
            "select provider, year, destination_group, sum(outflow_count) as n, sum(outflow_share) as share "
            "from marts.outflow_by_destination where {own} group by all",
            "provider",
            self.provider,
        )
        groups = self.shared.rows("select * from reference.destination_groups order by sort_order")
        by = {(r["year"], r["destination_group"]): r for r in found if r["year"] in self.years}
        table = []
        for g in groups:
            cells = {y: by.get((y, g["destination_group"])) for y in self.years}
            table.append({
                "label": g["label_nl"],
                "cells": [(numbers.count(c["n"]) if c else "0", numbers.percent(c["share"] if c else 0.0, 0))
                          for c in cells.values()],
            })  # fmt: skip
        chart = svg.Chart(
            "Uitstroom per groep (% van de totale uitstroom)",
            [g["label_nl"] for g in groups],
            [svg.Series(str(y), [(by.get((y, g["destination_group"])) or {}).get("share", 0.0) for g in groups])
             for y in self.years],
            lambda v: numbers.percent(v, 0),
            value_labels=True,
        )  # fmt: skip
        if len(self.years) == 2:  # the year of the report in the programme colour, the year before in grey
            chart.series = chart.series[::-1]
        return table, svg.bar_chart(chart)

    def destinations(self) -> tuple[list[dict], str]:
        found = self.shared.own(
            "select * from marts.outflow_by_destination where {own} order by sort_order", "provider", self.provider
        )
        order: dict[str, dict] = {}
        for r in (r for r in found if r["year"] in self.years):
            order.setdefault(r["destination"], {"label": r["destination_label"], "group": r["destination_group"]})
            order[r["destination"]][r["year"]] = r
        table = [
            {"label": d["label"], "cells": [(numbers.count(d[y]["outflow_count"]) if y in d else "0",
                                             numbers.percent(d[y]["outflow_share"] if y in d else 0.0, 0))
                                            for y in self.years]}
            for d in order.values()
        ]  # fmt: skip
        this = [d.get(self.year) for d in order.values()]
        chart = svg.share_bars(
            f"Uitstroom per bestemming in {self.year}",
            [d["label"] for d in order.values()],
            [r["outflow_share"] if r else 0.0 for r in this],
            [f"{numbers.percent(r['outflow_share'] if r else 0.0, 0)} ({numbers.count(r['outflow_count'] if r else 0)})"
             for r in this],
            [GROUP_COLOURS.get(d["group"], "#999999") for d in order.values()],
        )  # fmt: skip
        return table, chart

    def locations(self) -> dict:
        found = [
            r
            for r in self.shared.own(
                "select * from marts.outflow_by_location where {own} order by location", "provider", self.provider
            )
            if r["year"] == self.year
        ]
        groups = self.shared.rows("select * from reference.destination_groups order by sort_order")
        names = sorted({r["location"] for r in found})
        by = {(r["location"], r["destination_group"]): r for r in found}
        totals = {r["location"]: r["location_outflow"] for r in found}
        matrix = [[(by.get((n, g["destination_group"])) or {}).get("outflow_count", 0) for g in groups] for n in names]
        hidden = suppressed_cells(matrix, self.privacy.min_count)
        limit = self.privacy.min_count
        out = []
        for i, name in enumerate(names):
            cells = []
            for j in range(len(groups)):
                value = matrix[i][j]
                if hidden[i][j]:
                    cells.append((f"<{limit}" if value < limit else "•", ""))
                else:
                    cells.append(
                        (numbers.count(value), numbers.percent(value / totals[name] if totals[name] else None, 0))
                    )
            out.append({"label": name, "total": numbers.suppressed_count(totals[name], limit), "cells": cells})
        return {"headers": [g["label_nl"] for g in groups], "rows": out, "limit": limit,
                "secondary": any(hidden[i][j] and matrix[i][j] >= limit
                                 for i in range(len(names)) for j in range(len(groups)))}  # fmt: skip

    def ladder(self) -> dict:
        shares = {
            r["year"]: r
            for r in self.shared.own("select * from marts.outflow_ladder where {own}", "provider", self.provider)
        }
        cells = {
            (r["step_start"], r["step_end"]): r["n"]
            for r in self.shared.own(
                "select provider, year, step_start, step_end, n from marts.outflow_ladder_transitions where {own}",
                "provider",
                self.provider,
            )
            if r["year"] == self.year
        }
        matrix = [
            {"step": s, "label": LADDER[s], "cells": [cells.get((s, e), 0) for e in LADDER],
             "total": sum(cells.get((s, e), 0) for e in LADDER)}
            for s in LADDER
        ]  # fmt: skip
        return {
            "years": [
                {"year": y, "n": shares[y]["n_with_steps"], "up": numbers.percent(shares[y]["moved_up_share"], 0),
                 "stable": numbers.percent(shares[y]["stable_share"], 0),
                 "down": numbers.percent(shares[y]["moved_down_share"], 0)}
                for y in self.years if y in shares
            ],
            "steps": LADDER,
            "matrix": matrix,
        }  # fmt: skip

    def html(self) -> str:
        this = self.summary[self.year]
        before = self.summary.get(self.previous)
        group_table, group_chart = self.groups()
        destination_table, destination_chart = self.destinations()
        return render(
            "outflow.html.j2",
            provider=self.provider,
            year=self.year,
            previous=self.previous,
            years=self.years,
            published=self.shared.published,
            this=this,
            before=before,
            pct=lambda v: numbers.percent(v, 0),
            change=numbers.points(this["regular_share_change"]),
            summary=self.summary_table(),
            group_table=group_table,
            group_chart=group_chart,
            destination_table=destination_table,
            destination_chart=destination_chart,
            locations=self.locations(),
            ladder=self.ladder(),
            median_months=numbers.number(this["median_trajectory_days"] / (365.25 / 12), 1)
            if this["median_trajectory_days"] is not None
            else "",
        )


def outflow_report(con: duckdb.DuckDBPyConnection, provider: str, privacy: Privacy, year: int | None = None) -> str:
    return OutflowReport(con, provider, year, privacy).html()
