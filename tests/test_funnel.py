"""Funnel plots (issue 29): marts.ips_funnel recomputed from the raw files of a multi-programme inbox (not from the
mart's SQL), with a quarter a programme did not send, a quarter too few programmes reported (the disclosure rule),
and programmes built to fall outside each limit; the national overview and the programme's own funnel in a real
headless Chromium, their PDFs read back."""

from __future__ import annotations

import csv
import math
from html import unescape
from pathlib import Path

import duckdb
import pytest

from pipelines.reporting.chromium import Chromium
from tests.conftest import ROOT, clean_env, run_refresh
from tests.test_reports import Tables, chromium_or_skip, open_offline

KEY = "funnel-test-key-0123456789"
Z95, Z998 = 1.959964, 3.090232
METRICS = {  # rate -> numerator; the denominator is the caseload
    "paid_work_rate": "paid_work",
    "paid_work_uwv_rate": "paid_work_uwv",
    "education_rate": "education",
    "successful_outflow_rate": "outflow_successful",
    "unsuccessful_outflow_rate": "outflow_unsuccessful",
}
HEADER = ["program_id", "program_name", "year", "quarter", "caseload", "new_clients", "fte", "paid_work",
          "paid_work_uwv", "education", "outflow_successful", "outflow_unsuccessful"]  # fmt: skip
# 2019 Q1: paid work built so that A falls below the 99.8% limit, B below the 95% limit, D above the 95% limit and
# E above the 99.8% limit; pooled 398 / 900 = .4422, limits at 100 clients: 95% .3449 / .5396, 99.8% .2887 / .5957
Q1 = {"A": (100, 10), "B": (100, 30), "C": (200, 88), "D": (100, 55), "E": (100, 80), "F": (300, 135)}
EXPECTED_Q1 = {"A": "below_998", "B": "below_95", "C": "within", "D": "above_95", "E": "above_998", "F": "within"}
QUARTERS = {
    (2019, 1): Q1,
    (2019, 2): {p: (c + 5, n + 2) for p, (c, n) in Q1.items() if p != "F"},  # F did not send its quarter
    (2019, 3): {p: Q1[p] for p in "ABC"},  # only three programmes: no national rate (3 - 1 < 3)
    (2019, 4): {p: (c + 10, n) for p, (c, n) in Q1.items()},
}


def _submission(program: str, year: int, quarter: int, caseload: int, paid: int) -> list:
    return [program, f"Trajectbureau {program}", year, quarter, caseload, 10, 5.0, paid, paid // 2, caseload // 20,
            3 + quarter, caseload // 25]  # fmt: skip


@pytest.fixture(scope="module")
def funnel_warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("funnel")
    folder = root / "inbox" / "ips_quarterly"
    folder.mkdir(parents=True)
    for program in Q1:
        with (folder / f"{program.lower()}_2019.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            for (year, quarter), submissions in QUARTERS.items():
                if program in submissions:
                    writer.writerow(_submission(program, year, quarter, *submissions[program]))
    warehouse = root / "wh" / "care_outcomes.duckdb"
    done = run_refresh(
        root / "inbox", warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": KEY, "CARE_OUTCOMES_CHROMIUM": ""}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return warehouse


def expected_funnel(folder: Path) -> dict[tuple[str, str, str], dict]:
    """Every row of ips_funnel, worked out in Python from the CSV files of the inbox."""
    counts: dict[tuple[str, str], dict] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                for period in (f"{r['year']}-K{r['quarter']}", r["year"]):
                    c = counts.setdefault((r["program_id"], period), {k: 0 for k in ["caseload", *METRICS.values()]})
                    for k in c:
                        c[k] += int(r[k])
    out = {}
    for metric, numerator in METRICS.items():
        for period in {p for _, p in counts}:
            members = {prog: c for (prog, p), c in counts.items() if p == period and c["caseload"] > 0}
            national = sum(c[numerator] for c in members.values()) / sum(c["caseload"] for c in members.values())
            shown = len(members) - 1 >= 3  # the disclosure rule
            for prog, c in members.items():
                rate, n = c[numerator] / c["caseload"], c["caseload"]
                limits = {
                    name: max(0.0, min(1.0, national + sign * z * math.sqrt(national * (1 - national) / n)))
                    for name, z, sign in (
                        ("lower_95", Z95, -1),
                        ("upper_95", Z95, 1),
                        ("lower_998", Z998, -1),
                        ("upper_998", Z998, 1),
                    )  # fmt: skip
                }
                signal = ("above_998" if rate > limits["upper_998"] else "above_95" if rate > limits["upper_95"]
                          else "below_998" if rate < limits["lower_998"] else "below_95" if rate < limits["lower_95"]
                          else "within")  # fmt: skip
                out[(prog, period, metric)] = {
                    "numerator": c[numerator], "denominator": n, "rate": rate, "n_programs": len(members),
                    "national_rate": national if shown else None, "signal": signal if shown else None,
                    **{k: (v if shown else None) for k, v in limits.items()},
                }  # fmt: skip
    return out


def test_ips_funnel_against_an_independent_computation_from_the_files(funnel_warehouse):
    expected = expected_funnel(funnel_warehouse.parent.parent / "inbox" / "ips_quarterly")
    with duckdb.connect(str(funnel_warehouse), read_only=True) as con:
        cursor = con.execute("select * from marts.ips_funnel")
        names = [d[0] for d in cursor.description]
        published = {(r["program_id"], r["period_code"], r["metric"]): r for r in
                     (dict(zip(names, row, strict=True)) for row in cursor.fetchall())}  # fmt: skip
        missing = con.execute(
            "select program_id, status from marts.ips_submissions where period_code = '2019-K2' and program_id = 'F'"
        ).fetchall()
    assert missing == [("F", "missing")]
    assert set(published) == set(expected)
    assert ("F", "2019-K2", "paid_work_rate") not in published  # no submission, no dot
    for key, want in expected.items():
        got = published[key]
        for column, value in want.items():
            if value is None or isinstance(value, str):
                assert got[column] == value, (key, column)
            else:
                assert got[column] == pytest.approx(value, rel=1e-12, abs=1e-12), (key, column)
    signals = {p: published[(p, "2019-K1", "paid_work_rate")]["signal"] for p in Q1}
    assert signals == EXPECTED_Q1
    assert {published[(p, "2019-K3", "paid_work_rate")]["national_rate"] for p in "ABC"} == {None}
    year = published[("F", "2019", "paid_work_rate")]  # F's year: the two quarters it sent, summed
    assert (year["numerator"], year["denominator"]) == (135 + 135, 300 + 310)


def test_the_national_overview_and_the_programmes_funnel_in_chromium(funnel_warehouse, tmp_path):
    executable = chromium_or_skip()
    reports = funnel_warehouse.parent / "reports"
    quarter, year = reports / "national" / "2019-K4.html", reports / "national" / "2019.html"
    assert quarter.exists() and year.exists()
    index = (reports / "index.html").read_text(encoding="utf-8")
    assert index.index("Landelijk overzicht") < index.index("IPS-programma") and 'href="national/2019-K4.html"' in index
    html = unescape(quarter.read_text(encoding="utf-8"))
    assert "boven de 99,8%-grens" in html or "binnen de grenzen" in html
    table = next(t for t in Tables(html).tables if t[0][:2] == ["Programma", "Code"])
    assert {row[1] for row in table[1:]} == set(Q1) and "procentpunt" in "".join(r[-1] for r in table[1:])
    # an older period on request, from the command line: Q1 has every signal
    done = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "pipelines.cli", "report", "national", "--period", "2019-K1",
         "--warehouse", str(funnel_warehouse), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=clean_env(CARE_OUTCOMES_CHROMIUM=executable), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    q1 = unescape((tmp_path / "2019-K1.html").read_text(encoding="utf-8"))
    paid = next(t for t in Tables(q1).tables if t[0][:2] == ["Programma", "Code"])
    words = {row[1]: row[5] for row in paid[1:]}
    assert words == {"A": "onder de 99,8%-grens", "B": "onder de 95%-grens", "C": "binnen de grenzen",
                     "D": "boven de 95%-grens", "E": "boven de 99,8%-grens", "F": "binnen de grenzen"}  # fmt: skip
    with Chromium(executable) as browser:
        browser.call("Network.enable", session=browser.session)
        browser.call("Log.enable", session=browser.session)
        open_offline(browser, tmp_path / "2019-K1.html")
        charts = browser.evaluate(
            "[...document.querySelectorAll('svg.chart')].map(s => [s.querySelectorAll('circle.dot').length, "
            "s.querySelectorAll('polyline.limit-95').length, s.querySelectorAll('polyline.limit-998').length, "
            "s.querySelectorAll('line.national').length, s.querySelectorAll('text.dot-label').length, "
            "s.getBoundingClientRect().height])"
        )
        assert len(charts) == 5, charts  # one funnel per rate
        for dots, c95, c998, national, labels, height in charts:
            assert (dots, c95, c998, national, labels) == (6, 2, 2, 1, 6) and height > 150
        # the programme's own report: its dot named and highlighted, the others unnamed
        page = reports / "ips" / "A.html"
        open_offline(browser, page)
        funnel = browser.evaluate(
            "(() => { const s = [...document.querySelectorAll('svg.chart')].find(s => s.querySelector('circle.dot'));"
            " return [s.querySelectorAll('circle.dot').length, s.querySelectorAll('circle.dot.own').length,"
            " [...s.querySelectorAll('text.dot-label')].map(t => t.textContent)]; })()"
        )
        assert funnel == [6, 1, ["A"]], funnel
    own = unescape(page.read_text(encoding="utf-8"))
    assert "onder de" in own or "binnen de grenzen" in own or "boven de" in own
    for other in "BCDEF":
        assert f"Trajectbureau {other}" not in own
    from pypdf import PdfReader

    text = " ".join(" ".join(p.extract_text() for p in PdfReader(tmp_path / "2019-K1.pdf").pages).split())
    assert "Landelijk overzicht IPS" in text and "99,8%" in text and "Trajectbureau A" in text
    assert (quarter.with_suffix(".pdf")).exists()
