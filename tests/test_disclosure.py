"""The disclosure rule (issue 30): no programme can work out another programme's figures from what it may read.

An inbox of five made-up programmes whose quarters have 2, 3, 4, 5 and 3 programmes reporting, years with 5 and 3,
and a fidelity round of 3 programmes, is refreshed through the CLI. Then, as each programme, an attacker who knows
its own figures and how many programmes stand behind each national figure tries what an analyst would:
"n x mean - own" and "sum - own" (the others' total), and solving the quartiles (with 3 programmes they are the three
values; with 4 they and the mean give all four). A derivation counts as a disclosure when it gives a figure about
fewer than ``min_programs_national`` (3) other programmes: one programme's value, the sum of two, the values of two.

The truth is worked out here from the files written (not from the marts' SQL), and the same attacks are shown to
succeed on national figures computed without the rule, so the test fails if the rule stops holding.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
from collections import defaultdict
from html import unescape
from pathlib import Path

import duckdb
import numpy
import pytest

from pipelines.reporting.common import Privacy
from pipelines.reporting.ips import IpsReport
from tests.conftest import run_refresh

MIN_OTHERS = 3  # dbt var min_programs_national
KEY = "disclosure-test-key-0123456789abcdef"
PROGRAMMES = ["NOORD", "OOST", "ZUID", "WEST", "MIDDEN"]
QUARTERS = {  # (year, quarter) -> the programmes that report it
    (2019, 1): PROGRAMMES[:2],
    (2019, 2): PROGRAMMES[:3],
    (2019, 3): PROGRAMMES[:4],
    (2019, 4): PROGRAMMES[:5],
    (2020, 1): PROGRAMMES[:3],
}
FIDELITY = PROGRAMMES[:3]
ITEMS = ["BZ1a", "BZ2", "BZ3", "OR1", "OR2", "BG2"]
COUNTS = ["caseload", "new_clients", "paid_work", "paid_work_uwv", "education", "outflow_successful"]


def _submissions() -> dict[tuple[str, int, int], dict[str, float]]:
    rng = random.Random(30)
    out = {}
    for (year, quarter), programmes in QUARTERS.items():
        for program in programmes:
            caseload = rng.randint(40, 200)
            paid = rng.randint(5, caseload // 2)
            out[(program, year, quarter)] = {
                "caseload": caseload,
                "new_clients": rng.randint(5, 30),
                "fte": rng.randint(20, 80) / 10,
                "paid_work": paid,
                "paid_work_uwv": rng.randint(0, paid),
                "education": rng.randint(0, 10),
                "outflow_successful": rng.randint(1, 12),
                "outflow_unsuccessful": rng.randint(0, 12),
            }
    return out


SUBMISSIONS = _submissions()
SCORES = {(p, item): random.Random(f"{p}{item}").randint(1, 5) for p in FIDELITY for item in ITEMS}


def _write_inbox(inbox: Path) -> None:
    (inbox / "ips_quarterly").mkdir(parents=True)
    (inbox / "ips_fidelity").mkdir()
    for program in PROGRAMMES:
        with (inbox / "ips_quarterly" / f"{program.lower()}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["program_id", "program_name", "year", "quarter", *next(iter(SUBMISSIONS.values()))])
            for (p, year, quarter), s in sorted(SUBMISSIONS.items()):
                if p == program:
                    writer.writerow([p, f"IPS {p.title()}", year, quarter, *s.values()])
    for program in FIDELITY:
        with (inbox / "ips_fidelity" / f"{program.lower()}_2019-11-01.csv").open("w", encoding="utf-8") as fh:
            fh.write("program_id,assessment_date,item_code,score_ips_a,score_ips_o\n")
            for item in ITEMS:
                fh.write(f"{program},2019-11-01,{item},{SCORES[(program, item)]},\n")


# ---- the truth, from the files written -----------------------------------------------------------------------


def truth() -> dict[tuple, dict[str, float]]:
    """(figure, period) -> {programme: its value}, for every figure a national number is made of."""
    values: dict[tuple, dict[str, float]] = defaultdict(dict)
    yearly_rates: dict[tuple, list[float]] = defaultdict(list)
    first: dict[tuple, dict] = {}
    later_new: dict[tuple, int] = defaultdict(int)
    for (program, year, quarter), s in sorted(SUBMISSIONS.items()):
        period = f"{year}-K{quarter}"
        for count in COUNTS:
            values[(count, period)][program] = s[count]
        values[("paid_work_rate", period)][program] = s["paid_work"] / s["caseload"]
        values[("successful_outflow_rate", period)][program] = s["outflow_successful"] / s["caseload"]
        yearly_rates[(program, year)].append(s["paid_work"] / s["caseload"])
        if (program, year) not in first:
            first[(program, year)] = s
        else:
            later_new[(program, year)] += s["new_clients"]
    for (program, year), rates in yearly_rates.items():
        values[("avg_paid_work_rate", str(year))][program] = statistics.fmean(rates)
        values[("total_caseload", str(year))][program] = first[(program, year)]["caseload"] + later_new[(program, year)]
    for program in FIDELITY:
        for item in ITEMS:
            values[(f"item_{item}", "2019")][program] = SCORES[(program, item)]
        values[("total_ips_a", "2019")][program] = sum(SCORES[(program, item)] for item in ITEMS)
    return values


# ---- what a programme reads ----------------------------------------------------------------------------------


def readable_figures(query) -> list[tuple[str, str, str, object]]:
    """(kind, figure, period, value) of every national figure in the marts, read through ``query(sql)`` (rows as
    dicts): 'mean' and 'sum' with a number, 'quartiles' with (p25, median, p75). NULLs are what the rule withheld."""
    out = []
    for r in query("select * from marts.ips_quarterly_national"):
        period = r["period_code"]
        for count in COUNTS:
            out += [("mean", count, period, r[count]), ("sum", count, period, r[f"{count}_sum"])]
        for rate in ("paid_work_rate", "successful_outflow_rate"):
            out.append(("mean", rate, period, r[rate]))
            out.append(("quartiles", rate, period, (r[f"{rate}_p25"], r[f"{rate}_median"], r[f"{rate}_p75"])))
    for r in query("select * from marts.ips_benchmark_long where metric in ('caseload', 'paid_work_rate')"):
        period = f"{r['year']}-K{r['quarter']}"
        out.append(("mean", r["metric"], period, r["national_value"]))
        out.append(("quartiles", r["metric"], period, (r["national_p25"], r["national_median"], r["national_p75"])))
    for r in query("select * from marts.ips_benchmark"):
        out.append(("mean", "paid_work_rate", r["period_code"], r["national_paid_work_rate"]))
    for r in query("select * from marts.ips_yearly_national"):
        out += [("mean", "avg_paid_work_rate", str(r["year"]), r["avg_paid_work_rate"]),
                ("mean", "total_caseload", str(r["year"]), r["total_caseload"])]  # fmt: skip
    for r in query("select * from marts.fidelity_items where is_latest_assessment"):
        out.append(("mean", f"item_{r['item_code']}", "2019", r["national_mean_ips_a"]))
    for r in query("select * from marts.fidelity_totals where is_latest_assessment"):
        out.append(("mean", "total_ips_a", "2019", r["national_mean_total_ips_a"]))
    return [f for f in out if f[3] is not None and not (f[0] == "quartiles" and None in f[3])]


def unprotected_figures(values) -> list[tuple[str, str, str, object]]:
    """The same national figures computed without the rule (every period with 2 programmes or more)."""
    out = []
    for (figure, period), by_programme in values.items():
        xs = sorted(by_programme.values())
        out += [("mean", figure, period, statistics.fmean(xs)), ("sum", figure, period, sum(xs))]
        quartiles = statistics.quantiles(xs, n=4, method="inclusive")  # continuous, as percentile_cont
        out.append(("quartiles", figure, period, tuple(quartiles)))
    return out


# ---- the attacks ---------------------------------------------------------------------------------------------


def _solve_quartiles(n: int, quartiles, mean: float | None) -> list[float] | None:
    """The sorted values behind continuous quartiles of n values (with the mean for n = 4); None if not unique."""
    rows, rhs = [], []
    for fraction, q in zip((0.25, 0.5, 0.75), quartiles, strict=True):
        position = (n - 1) * fraction
        low, weight = int(math.floor(position)), position - math.floor(position)
        row = [0.0] * n
        row[low] += 1 - weight
        if weight:
            row[low + 1] += weight
        rows.append(row)
        rhs.append(q)
    if mean is not None:
        rows.append([1.0 / n] * n)
        rhs.append(mean)
    matrix = numpy.array(rows)
    if numpy.linalg.matrix_rank(matrix) < n:
        return None
    solution, *_ = numpy.linalg.lstsq(matrix, numpy.array(rhs), rcond=None)
    return sorted(float(x) for x in solution)


def disclosures(own: str, figures, values) -> list[str]:
    """What ``own`` can work out about fewer than MIN_OTHERS other programmes, checked against the truth."""
    found = []
    means = {(f, p): v for kind, f, p, v in figures if kind == "mean"}
    for kind, figure, period, value in figures:
        by_programme = values.get((figure, period), {})
        n = len(by_programme)  # the attacker knows how many programmes stand behind the figure
        others = {p: v for p, v in by_programme.items() if p != own}
        if not 0 < len(others) < MIN_OTHERS:
            continue
        mine = by_programme.get(own, 0)
        if kind in ("mean", "sum"):
            others_total = (value * n if kind == "mean" else value) - mine
            if math.isclose(others_total, sum(others.values()), rel_tol=1e-9, abs_tol=1e-6):
                found.append(f"{figure} {period}: {kind} - own = the total of {len(others)} other programme(s)")
        elif kind == "quartiles" and n <= 4:
            solved = _solve_quartiles(n, value, means.get((figure, period)) if n == 4 else None)
            if solved is not None and all(
                math.isclose(a, b, abs_tol=1e-6) for a, b in zip(solved, sorted(by_programme.values()), strict=True)
            ):
                found.append(f"{figure} {period}: the quartiles give the {n} values")
    return found


# ---- the tests -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disclosure_warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("disclosure")
    _write_inbox(root / "inbox")
    warehouse = root / "wh" / "care_outcomes.duckdb"
    done = run_refresh(root / "inbox", warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": KEY})
    assert done.returncode == 0, done.stdout + done.stderr
    return warehouse


def _query_own(con: duckdb.DuckDBPyConnection, own: str):
    """Rows as a programme reads them: programme-level marts its rows only (as PostgreSQL's policy and its report)."""
    found = con.execute(
        "select table_name from information_schema.columns where table_schema = 'marts' and column_name = 'program_id'"
    )
    programme_level = {t for (t,) in found.fetchall()}

    def query(sql: str) -> list[dict]:
        table = sql.split("marts.")[1].split()[0]
        if table in programme_level:
            sql = sql.replace(f"marts.{table}", f"(select * from marts.{table} where program_id = '{own}')")
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    return query


def test_the_attacks_work_on_national_figures_without_the_rule():
    values = truth()
    figures = unprotected_figures(values)
    found = {own: disclosures(own, figures, values) for own in PROGRAMMES}
    assert any("2019-K1: sum - own" in f for f in found["NOORD"]), found["NOORD"]  # 2 programmes: the other's figure
    assert any("2019-K2: the quartiles give the 3 values" in f for f in found["ZUID"]), found["ZUID"]
    assert any("total_ips_a 2019: mean - own" in f for f in found["OOST"]), found["OOST"]


def test_no_programme_can_work_out_another_programmes_figures_from_the_serving_file(disclosure_warehouse):
    values = truth()
    with duckdb.connect(str(disclosure_warehouse), read_only=True) as con:
        for own in PROGRAMMES:
            figures = readable_figures(_query_own(con, own))
            assert figures, "the marts hold national figures where enough programmes reported"
            assert disclosures(own, figures, values) == [], own
        # what the rule leaves: figures from 4 programmes (2019-K3), quartiles from 5 (2019-K4), the year with 5
        national = {r[0]: r[1:] for r in con.execute(
            "select period_code, n_programs, national_suppressed, caseload_sum, paid_work_rate, paid_work_rate_median "
            "from marts.ips_quarterly_national"
        ).fetchall()}  # fmt: skip
        caseloads = {period: sum(v.values()) for (f, period), v in values.items() if f == "caseload"}
        assert national["2019-K1"] == (2, True, None, None, None)
        assert national["2019-K2"] == (3, True, None, None, None)
        assert national["2020-K1"] == (3, True, None, None, None)
        assert national["2019-K3"][:3] == (4, False, caseloads["2019-K3"]) and national["2019-K3"][4] is None
        assert national["2019-K4"][:3] == (5, False, caseloads["2019-K4"])
        rates = sorted(values[("paid_work_rate", "2019-K4")].values())
        assert math.isclose(national["2019-K4"][3], statistics.fmean(rates), rel_tol=1e-9)
        assert math.isclose(national["2019-K4"][4], rates[2], rel_tol=1e-9)
        yearly = dict(con.execute("select year, total_caseload from marts.ips_yearly_national").fetchall())
        assert yearly[2020] is None
        assert math.isclose(yearly[2019], statistics.fmean(values[("total_caseload", "2019")].values()), rel_tol=1e-9)
        fidelity = con.execute("select distinct national_mean_ips_a from marts.fidelity_items").fetchall()
        assert fidelity == [(None,)]  # 3 programmes assessed


def test_a_programme_report_leaves_out_what_the_rule_withholds(disclosure_warehouse):
    with duckdb.connect(str(disclosure_warehouse), read_only=True) as con:
        html = unescape(IpsReport(con, "NOORD", [2019], Privacy()).html())
    assert "te weinig programma's rapporteerden" in html
    for other in PROGRAMMES[1:]:
        assert other not in html and other.title() not in html


def test_no_programme_login_can_work_out_another_programmes_figures_in_postgresql(
    postgres_server, disclosure_warehouse
):
    import psycopg
    from psycopg.rows import dict_row

    from pipelines.serving.postgres import grant_program, publish_postgres
    from tests.test_postgres import as_role, database

    dsn = database(postgres_server, "disclosure")
    publish_postgres(disclosure_warehouse, dsn)
    for own in PROGRAMMES:
        grant_program(dsn, own, f"{own.lower()}_bi")
    publish_postgres(disclosure_warehouse, dsn)
    values = truth()
    for own in PROGRAMMES:
        with psycopg.connect(as_role(dsn, f"{own.lower()}_bi"), row_factory=dict_row) as login:
            figures = readable_figures(lambda sql, login=login: login.execute(sql).fetchall())
            programmes = {r["program_id"] for r in login.execute("select program_id from marts.ips_benchmark_long")}
            assert programmes == {own}
            assert figures and disclosures(own, figures, values) == [], own
        # the same figures as the serving file gives that programme
        with duckdb.connect(str(disclosure_warehouse), read_only=True) as con:
            expected = readable_figures(_query_own(con, own))
        assert sorted(f[:3] for f in figures) == sorted(f[:3] for f in expected), own
