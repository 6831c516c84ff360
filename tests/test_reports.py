"""The feedback reports (issue 14): made every night from the published marts, one per programme and provider,
checked against figures worked out here from the sample's counts (SPEC section 7), read back in a real headless
Chromium (no request leaves the file, charts drawn, A4 PDF)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.reporting import common, numbers
from pipelines.reporting.build import write_reports
from pipelines.reporting.chromium import PRINT, Chromium, ChromiumUnavailable, find_chromium
from pipelines.reporting.common import Privacy, Shared, file_names, serving, slug
from pipelines.reporting.ips import IpsReport, programs
from pipelines.reporting.outflow import OutflowReport, providers, suppressed_cells
from tests.conftest import ROOT, clean_env

# GGNet's counts behind Tables 1-3 of the seed report (SPEC section 7): year, quarter, caseload, new, fte, paid,
# uwv, edu, successful, unsuccessful
GGNET = [
    (2017, 1, 75, None, 6.3, 33, 15, 0, 1, 3),
    (2017, 2, 76, 11, 6.3, 25, 8, 0, 2, 8),
    (2017, 3, 79, 6, 6.4, 28, 10, 2, 2, 1),
    (2017, 4, 83, 16, 6.4, 38, 38, 2, 8, 4),
    (2018, 1, 104, 30, 6.4, 33, 31, 2, 2, 7),
    (2018, 2, 170, 106, 7.8, 50, 20, 3, 30, 10),
    (2018, 3, 176, 28, 7.3, 63, 50, 4, 12, 10),
    (2018, 4, 237, 72, 8.3, 77, 53, 6, 5, 6),
]


def chromium_or_skip() -> str:
    if os.environ.get("CARE_OUTCOMES_SECONDARY_PYTHON"):
        pytest.skip("Chromium is tested on the main Python only (make test-py313 runs the rest on Python 3.13)")
    try:
        return find_chromium({})
    except ChromiumUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the reports in a real Chromium (.ci/run installs Debian's chromium): {exc}")
        pytest.skip(f"outside CI without Chromium: {exc}")


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (a note marker such as '1)' stays on the text)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def plain(cell: str) -> str:
    """The figure without its footnote marker."""
    return re.sub(r"(^| )\d+\)$", "", cell).strip()


def block(table: list[list[str]], name: str) -> dict[tuple[str, str], list[str]]:
    """The rows of one block (the programme, or 'Landelijk') by (year, period)."""
    out, inside, year = {}, False, ""
    for row in table[1:]:
        if len(row) == 1:
            inside = row[0] == name
            continue
        if inside:
            year = row[0] or year
            out[(year, plain(row[1]))] = [plain(c) for c in row[2:]]
    return out


@pytest.fixture(scope="module")
def reports(sample_warehouse) -> Path:
    return sample_warehouse.parent / "reports"


@pytest.fixture(scope="module")
def ggnet(reports) -> str:
    return (reports / "ips" / "GGNET.html").read_text(encoding="utf-8")


# ---- Dutch numbers ---------------------------------------------------------------------------------------


def test_numbers_are_written_as_a_dutch_reader_expects():
    assert numbers.percent(0.44) == "44,00%"
    assert numbers.percent(14.0) == "1.400,00%"
    assert numbers.percent(0.43076, 0) == "43%"
    assert numbers.number(75 / 6.3, 2) == "11,90"
    assert numbers.number(-0.0001, 2) == "0,00"
    assert numbers.count(1234567) == "1.234.567"
    assert numbers.count(None) == "" and numbers.percent(float("nan")) == ""
    assert numbers.points(0.1089) == "+11 procentpunt" and numbers.points(-0.13) == "-13 procentpunt"
    assert numbers.formatted(0.2530, "0.00%") == "25,30%" and numbers.formatted(108, "0") == "108"
    assert [numbers.suppressed_count(n, 5) for n in (0, 4, 5, 12)] == ["<5", "<5", "5", "12"]


def test_slugs_and_file_names():
    assert slug("ICT Maatwerk") == "ict-maatwerk"
    assert slug("  Zorg & Welzijn (Noord) ") == "zorg-welzijn-noord"
    assert slug("Café Één") == "cafe-een"
    assert file_names(["ICT Maatwerk", "ICT-Maatwerk", "De Werkplaats"]) == {
        "De Werkplaats": "de-werkplaats",
        "ICT Maatwerk": "ict-maatwerk",
        "ICT-Maatwerk": "ict-maatwerk-2",
    }


# ---- small counts per location ---------------------------------------------------------------------------


def test_small_location_counts_are_hidden_with_what_would_give_them_away():
    # worked example: rows are locations, columns groups; row and column totals are published exactly
    matrix = [
        [10, 6, 6, 2],  # 2 < 5 hidden; alone in its row, so the row's smallest shown cell (6, the first) goes too
        [8, 7, 6, 0],  # 0 < 5 hidden; then its row hides 6
        [10, 5, 5, 0],
    ]
    hidden = suppressed_cells(matrix, 5)
    for row in hidden:
        assert sum(row) in (0, 2, 3, 4)
    assert hidden[0][3] and hidden[1][3] and hidden[2][3]
    for j in range(4):
        assert sum(hidden[i][j] for i in range(3)) != 1, f"column {j} hides one cell"


@given(
    st.lists(st.lists(st.integers(0, 30), min_size=4, max_size=4), min_size=1, max_size=6),
    st.integers(1, 10),
)
def test_no_hidden_count_can_be_worked_back_from_the_totals(matrix, threshold):
    hidden = suppressed_cells(matrix, threshold)
    lines = [list(row) for row in hidden]
    if len(matrix) > 1:
        lines += [[hidden[i][j] for i in range(len(matrix))] for j in range(4)]
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value < threshold:
                assert hidden[i][j]
    for line in lines:
        assert sum(line) != 1, (matrix, hidden)


# ---- every night -----------------------------------------------------------------------------------------


def test_every_programme_and_provider_gets_a_report_after_the_publish(sample_build, reports, serving):
    warehouse, done = sample_build
    program_ids = [r[0] for r in serving.execute("select distinct program_id from marts.ips_quarterly").fetchall()]
    providers = [r[0] for r in serving.execute("select distinct provider from marts.outflow_summary").fetchall()]
    assert sorted(p.stem for p in (reports / "ips").glob("*.html")) == sorted(program_ids)
    assert sorted(p.stem for p in (reports / "outflow").glob("*.html")) == sorted(slug(p) for p in providers)
    assert (reports / "outflow" / "ict-maatwerk.html").is_file()
    index = (reports / "index.html").read_text(encoding="utf-8")
    for pid in program_ids:
        assert f'href="ips/{pid}.html"' in index
    assert reports.is_symlink(), "the set is published by turning one link"
    line = next(x for x in done.stdout.splitlines() if x.startswith("reports:"))
    assert f"national 2018-K4, 2018, 6 IPS, 3 outflow in {reports}/index.html" in line
    try:
        find_chromium({})
    except ChromiumUnavailable:
        assert "no PDF: no Chromium found" in line
        return
    assert "(PDF 11)" in line
    for html in [*(reports / "national").glob("*.html"), *(reports / "ips").glob("*.html"),
                 *(reports / "outflow").glob("*.html")]:  # fmt: skip
        assert html.with_suffix(".pdf").is_file()
    assert 'href="ips/GGNET.pdf"' in index


def test_the_reports_are_dagster_assets_downstream_of_the_serving_file():
    from pipelines.definitions import defs
    from pipelines.reporting.assets import IPS_REPORTS_KEY, OUTFLOW_REPORTS_KEY
    from pipelines.serving.assets import SERVING_KEY

    graph = defs().resolve_asset_graph()
    for key in (IPS_REPORTS_KEY, OUTFLOW_REPORTS_KEY):
        assert SERVING_KEY in graph.get(key).parent_keys
    assert IPS_REPORTS_KEY in defs().resolve_job_def("refresh").asset_layer.selected_asset_keys


# ---- the IPS report --------------------------------------------------------------------------------------


def test_ggnet_tables_1_to_4_match_the_counts(ggnet):
    t1, t2, t3, t4 = Tables(ggnet).tables[:4]
    own = block(t1, "GGNet / Twomorrow")
    by_q = {(y, q): r for y, q, *r in GGNET}
    labels = {1: "jan-mrt", 2: "apr-juni", 3: "juli-sept", 4: "okt-dec"}

    def row(table, y, q, name="GGNet / Twomorrow"):
        rows = block(table, name)
        key = next(k for k in rows if k[1] == f"{labels[q]} {y}")
        return rows[key]

    for (y, q), (caseload, new, fte, *_rest) in by_q.items():
        cells = row(t1, y, q)
        assert cells[0] == str(caseload), "counts as whole numbers"
        assert cells[1] == ("" if new is None else str(new))
        assert cells[2] == numbers.number(fte, 2)
        assert cells[3] == numbers.number(caseload / fte, 2)
    assert row(t1, 2017, 1)[3] == "11,90"
    assert row(t1, 2018, 1)[4] == "25,30%"  # (104 - 83) / 83
    assert row(t1, 2017, 1)[4] == "", "no quarter before the first"
    assert own[("2018", "Gemiddeld")][0] == numbers.number((104 + 170 + 176 + 237) / 4, 2)
    assert row(t2, 2017, 1)[0] == "44,00%" and row(t2, 2018, 1)[3] == "93,94%"
    # the published report prints 26,92% and 2,88% here; from its own counts: 2 -> 30 and 7 -> 10
    assert row(t3, 2018, 2)[2] == "1.400,00%" and row(t3, 2018, 2)[3] == "42,86%"
    assert row(t2, 2017, 3)[5] == "", "0 -> 2 has no growth (the report printed 0,00%)"
    national_from = next(i for i, r in enumerate(t4) if r == ["Landelijk"])
    years = {r[0]: [plain(c) for c in r[1:]] for r in t4[1:national_from] if len(r) > 1}
    assert years["2017"][0] == "108" and years["2018"][0] == "310"
    succ_2018 = sum(s / c for y, q, c, *_m, s, _u in GGNET if y == 2018) / 4
    assert years["2018"][3] == numbers.percent(succ_2018) == "7,12%", "the mean of the exact rates, not 7,13%"


def test_empty_growth_figures_say_why(ggnet):
    notes = re.findall(r"<li>(.*?)</li>", ggnet, re.S)
    t2 = Tables(ggnet).tables[1]
    cell = next(r for r in t2 if len(r) > 2 and r[1] == "juli-sept 2017")[7]
    number = int(re.fullmatch(r"(\d+)\)", cell).group(1))
    assert "was 0" in notes[number - 1] and "groei ten opzichte van 0 bestaat niet" in notes[number - 1]
    first = next(r for r in Tables(ggnet).tables[0] if len(r) > 2 and r[1] == "jan-mrt 2017")[6]
    assert "eerste kwartaal" in notes[int(first.rstrip(")")) - 1]


def test_a_quarter_after_a_gap_is_marked(reports):
    html = (reports / "ips" / "DIMENCE.html").read_text(encoding="utf-8")
    t1 = Tables(html).tables[0]
    missing = next(r for r in t1 if len(r) > 1 and r[1].startswith("apr-juni 2018"))
    assert missing[2] == "niet ontvangen"
    after = next(r for r in t1 if len(r) > 1 and r[1].startswith("juli-sept 2018"))
    notes = re.findall(r"<li>(.*?)</li>", html, re.S)
    assert "Volgt op een kwartaal dat niet is ontvangen." in notes[int(re.search(r"(\d+)\)", after[1]).group(1)) - 1]
    assert any("het kwartaal ervoor is niet ontvangen" in n for n in notes), "the empty growth says why"
    assert "* na een ontbrekend kwartaal" in html, "and the charts mark it"


def test_fidelity_table_and_national_spread(ggnet, serving):
    tables = Tables(ggnet).tables
    fidelity = next(t for t in tables if t[0][:3] == ["", "Item", "Score IPS-A"])
    total = next(r for r in fidelity if len(r) > 1 and r[1] == "Totaal")
    assert total[2:4] == ["110", "104"]
    (mean_a,) = serving.execute(
        "select avg(total_ips_a) from marts.fidelity_totals where is_latest_assessment"
    ).fetchone()
    assert total[4] == numbers.number(mean_a, 2)
    assert next(r for r in fidelity if len(r) > 1 and r[1] == "Oordeel")[2] == "Goede IPS"
    spread = next(t for t in tables if t[0][:3] == ["Indicator", "Uw programma", "Plaats"])
    work = next(r for r in spread if r[0] == "% Betaald werk")
    expected = serving.execute(
        "select rank, n_programs, national_p25, national_median, national_p75 from marts.ips_benchmark_long "
        "where program_id = 'GGNET' and year = 2018 and quarter = 4 and metric = 'paid_work_rate'"
    ).fetchone()
    assert work[1] == "32,49%" and work[2] == f"{expected[0]} van {expected[1]}"
    assert work[4:7] == [numbers.percent(v) for v in expected[2:]]
    assert work[7] == "Minimaal", "the published band"
    assert "Minimaal 31%" in ggnet and "Uitstekend 50%" in ggnet, "the thresholds on the employment chart"


def test_a_programme_report_holds_no_other_programme(reports, serving):
    others = serving.execute(
        "select distinct program_id, program_name from marts.ips_quarterly where program_id <> 'GGNET'"
    ).fetchall()
    html = (reports / "ips" / "GGNET.html").read_text(encoding="utf-8")
    for program_id, name in others:
        assert program_id not in html and name not in html
    for other_id, _ in others:
        other = (reports / "ips" / f"{other_id}.html").read_text(encoding="utf-8")
        assert "GGNet" not in other and "GGNET" not in other


def test_a_whole_set_reads_each_mart_once_and_gives_every_report_what_it_reads_alone(sample_warehouse):
    """The nightly set reads each mart once for every report (Shared(whole_set=True)); each report must be exactly
    the one made on its own, which reads its programme's or provider's rows only."""
    privacy = Privacy()
    with serving(sample_warehouse) as con:
        whole = Shared(con, whole_set=True)
        program_ids = [p["program_id"] for p in programs(con)]
        provider_names = [p["provider"] for p in providers(con)]
        assert len(program_ids) >= 3 and len(provider_names) >= 2
        for program_id in program_ids:
            assert (
                IpsReport(con, program_id, None, privacy, whole).html()
                == IpsReport(con, program_id, None, privacy).html()
            )
        for provider in provider_names:
            together = OutflowReport(con, provider, None, privacy, whole).html()
            assert together == OutflowReport(con, provider, None, privacy).html()
        mart_reads = {sql for sql, _, _ in whole._grouped}
        assert len(mart_reads) == len(whole._grouped)  # one read per mart, whatever the number of reports
        # a programme's earlier years: its latest quarter in those years, from the same one read per year asked
        assert IpsReport(con, "GGNET", [2017], privacy, whole).html() == IpsReport(con, "GGNET", [2017], privacy).html()


def test_chosen_years(sample_warehouse):
    with serving(sample_warehouse) as con:
        html = IpsReport(con, "GGNET", [2017], Privacy()).html()
    assert "jan-mrt 2017" in html and "jan-mrt 2018" not in html
    assert "Terugkoppeling kwartaaluitkomsten IPS 2017" in html


# ---- the outflow report ----------------------------------------------------------------------------------


def test_ict_maatwerk_outflow_report(reports):
    html = (reports / "outflow" / "ict-maatwerk.html").read_text(encoding="utf-8")
    tables = Tables(html).tables
    summary = {r[0]: r[1:] for r in tables[0][1:]}
    assert summary["Totale uitstroom"] == ["87", "65", "-22"]
    assert summary["Uitstroom naar betaald werk"][1] == "18"
    assert summary["Uitstroom naar betaald werk met jobcoach"] == ["12", "17", "+5"]
    assert summary["Uitstroom naar betaald werk zonder jobcoach"][1] == "1"
    assert summary["Uitstroom naar opleiding"][1] == "10"
    assert summary["% Regulier (trede 5/6)"][1] == "43%"  # 28 / 65
    assert summary["% Betaald werk met jobcoach"][:2] == ["14%", "26%"]  # 12 / 87, 17 / 65
    assert summary["% Andere dagbesteding"][1] == "22%"  # 14 / 65
    assert summary["% Regulier (trede 5/6)"][2] == numbers.points(28 / 65 - summary_regular_2022(tables))
    groups = next(t for t in tables if t[0][0] == "Groep")
    assert [r[0] for r in groups[1:]] == ["Regulier", "Thuis", "Andere dagbesteding", "Overige"]
    assert "65</strong>deelnemers uitgestroomd in 2023, tegen 87 in 2022" in html


def summary_regular_2022(tables) -> float:
    summary = {r[0]: r[1:] for r in tables[0][1:]}
    regular, total = int(summary["Uitstroom naar regulier (trede 5/6)"][0]), int(summary["Totale uitstroom"][0])
    return regular / total


def test_small_location_counts_show_as_less_than_five(reports, serving):
    html = (reports / "outflow" / "ict-maatwerk.html").read_text(encoding="utf-8")
    locations = next(t for t in Tables(html).tables if t[0][0] == "Locatie")
    seen_small = False
    for row in locations[1:]:
        counts = [row[1]] + row[2::2]
        for cell in counts:
            assert cell in ("<5", "•") or int(cell) >= 5, row
            seen_small |= cell == "<5"
    assert seen_small, "the sample has small per-location counts"
    assert [r[0] for r in locations[1:]] == ["Arnhem", "Doetinchem", "Nijmegen"]
    # provider-wide counts stay exact, as in the published report
    (small,) = serving.execute(
        "select min(outflow_count) from marts.outflow_by_destination where provider = 'ICT Maatwerk' and year = 2023 "
        "and outflow_count > 0"
    ).fetchone()
    assert small < 5 and ">1</td>" in html


def test_the_location_threshold_is_configurable(sample_warehouse):
    with serving(sample_warehouse) as con:
        html = OutflowReport(con, "ICT Maatwerk", None, Privacy(min_count=3)).html()
    assert "&lt;3" in html and "&lt;5" not in html


# ---- on demand -------------------------------------------------------------------------------------------


def test_report_command_reads_the_serving_file_while_a_refresh_writes(sample_warehouse, tmp_path):
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    writer = duckdb.connect(str(work))  # as a running refresh holds it
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "report", "outflow", "--provider", "ICT Maatwerk", "--year", "2023",
             "--warehouse", str(sample_warehouse), "--out", str(tmp_path)],
            capture_output=True, text=True, cwd=ROOT, env=clean_env(CARE_OUTCOMES_CHROMIUM="off"), timeout=120,
        )  # fmt: skip
    finally:
        writer.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"report:    {tmp_path / 'ict-maatwerk.html'}" in done.stdout
    assert "no PDF:    PDF switched off" in done.stdout
    assert "65" in (tmp_path / "ict-maatwerk.html").read_text(encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "report", "ips", "--program", "NOPE", "--warehouse",
         str(sample_warehouse), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=clean_env(CARE_OUTCOMES_CHROMIUM="off"), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "report failed: programme 'NOPE': not in marts.ips_quarterly "
        "(programmes: ALTRECHT, DIMENCE, GGNET, LENTIS, MONDRIAAN, PARNASSIA)"
    )


def test_without_chromium_the_html_still_comes_and_says_why(sample_warehouse, tmp_path):
    made = write_reports(sample_warehouse, tmp_path / "reports", Privacy(), chromium_setting="/no/such/chromium")
    assert len(made.ips) == 6 and not made.pdfs
    assert made.pdf_problem == "CARE_OUTCOMES_CHROMIUM=/no/such/chromium is not an executable"
    assert "no PDF: CARE_OUTCOMES_CHROMIUM=/no/such/chromium" in made.line()
    assert "Geen PDF's" in unescape((tmp_path / "reports" / "index.html").read_text(encoding="utf-8"))


def test_a_new_set_replaces_the_old_in_one_step(sample_warehouse, tmp_path):
    target = tmp_path / "reports"
    first = write_reports(sample_warehouse, target, Privacy(), "off")
    first_set = target.resolve()
    second = write_reports(sample_warehouse, target, Privacy(), "off")
    assert target.resolve() != first_set and first_set.is_dir(), "the set before stays for a reader holding it"
    second_set = target.resolve()
    write_reports(sample_warehouse, target, Privacy(), "off")
    assert not first_set.exists(), "older sets are removed"
    assert sorted((tmp_path / ".reports").iterdir()) == sorted([second_set, target.resolve()])
    assert first.ips.keys() == second.ips.keys()


# ---- in a real browser -----------------------------------------------------------------------------------


def open_offline(browser: Chromium, page: Path) -> None:
    """Open a report (Network and Log enabled): it asked no other host and logged no error."""
    browser.events.clear()
    browser.open(page)
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), (page, requests)
    problems = [e["params"]["entry"] for e in browser.events if e.get("method") == "Log.entryAdded"]
    assert not [p for p in problems if p["level"] == "error"], (page, problems)


def test_reports_render_offline_in_chromium_and_print_on_a4(reports, tmp_path):
    executable = chromium_or_skip()
    pages = [
        reports / "index.html",
        *sorted((reports / "national").glob("*.html")),
        *sorted((reports / "ips").glob("*.html")),
        *sorted((reports / "outflow").glob("*.html")),
    ]
    with Chromium(executable) as browser:
        browser.call("Network.enable", session=browser.session)
        browser.call("Log.enable", session=browser.session)
        for page in pages:
            open_offline(browser, page)
            charts = browser.evaluate(
                "[...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().height)"
            )
            if page.parent.name == "ips":  # figures 1-3 and the programme's funnel
                assert len(charts) == 4 and min(charts) > 100, (page, charts)
            if page.parent.name == "national":  # a funnel per rate
                assert len(charts) == 5 and min(charts) > 100, (page, charts)
            if page.parent.name == "outflow":
                assert len(charts) == 2 and min(charts) > 100, (page, charts)
        # a page that asks another host gets nothing: the policy in every report forbids it
        probe = tmp_path / "probe.html"
        probe.write_text((reports / "index.html").read_text(encoding="utf-8").replace(
            "</body>", '<img src="http://example.invalid/x.png"></body>'), encoding="utf-8")  # fmt: skip
        browser.events.clear()
        browser.open(probe)
        asked = {
            e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"
        }
        blocked = {
            e["params"]["requestId"]: e["params"].get("blockedReason")
            for e in browser.events
            if e.get("method") == "Network.loadingFailed"
        }
        outside = [rid for rid, url in asked.items() if url.startswith("http")]
        assert outside and all(blocked.get(rid) == "csp" for rid in outside), (asked, blocked)

    from pypdf import PdfReader

    pdf = PdfReader(reports / "ips" / "GGNET.pdf")
    assert len(pdf.pages) >= 3
    for p in pdf.pages:
        assert abs(float(p.mediabox.width) - 595.3) < 2 and abs(float(p.mediabox.height) - 841.9) < 2, "A4"
    assert "/StructTreeRoot" in pdf.trailer["/Root"], "a tagged PDF: its structure for a screen reader"
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert "Tabel 1" in text and "11,90" in text and "1.400,00%" in text
    outflow = PdfReader(reports / "outflow" / "ict-maatwerk.pdf")
    assert "<5" in "\n".join(p.extract_text() for p in outflow.pages)


def test_a_report_put_in_the_page_prints_as_the_file_opened(reports, tmp_path):
    """PDFs are printed from the report's HTML set as the page's document (no navigation, a third of the time of
    opening the file): the same pages, text, title, language and tags as printing the opened file."""
    import base64
    import io

    from pypdf import PdfReader

    def seen(data: bytes):
        pdf = PdfReader(io.BytesIO(data))
        root = pdf.trailer["/Root"]
        return (
            len(pdf.pages),
            [p.extract_text() for p in pdf.pages],
            pdf.metadata.get("/Title"),
            root.get("/Lang"),
            ("/StructTreeRoot" in root),
        )

    with Chromium(chromium_or_skip()) as browser:
        for page in [reports / "ips" / "GGNET.html", reports / "outflow" / "ict-maatwerk.html"]:
            browser.pdf(page, tmp_path / "shown.pdf")
            browser.open(page)
            opened = browser.call("Page.printToPDF", PRINT, session=browser.session)
            shown = seen((tmp_path / "shown.pdf").read_bytes())
            assert shown == seen(base64.b64decode(opened["data"])) and shown[0] >= 2 and shown[4], page
            assert shown[2] and shown[2] in page.read_text(encoding="utf-8") and shown[3] == "nl"


def test_html_asks_nothing_of_another_host(reports):
    for page in [reports / "index.html", *reports.glob("*/*.html")]:
        html = page.read_text(encoding="utf-8")
        addresses = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html) + re.findall(r"url\(([^)]*)\)", html)
        assert all(not re.match(r"[a-z]+:", a) for a in addresses), (page, addresses)
        assert re.sub(r'xmlns="http://www.w3.org/2000/svg"|http-equiv', "", html).count("http") == 0, page
        assert "default-src 'none'" in html


def test_report_settings_from_the_environment():
    from pipelines.reporting.assets import ReportsResource
    from pipelines.reporting.common import ReportError

    assert ReportsResource.from_environment({}).min_count == 5
    assert ReportsResource.from_environment({"CARE_OUTCOMES_REPORT_MIN_COUNT": "10"}).min_count == 10
    with pytest.raises(ReportError, match="CARE_OUTCOMES_REPORT_MIN_COUNT=vijf: a whole number of at least 1"):
        ReportsResource.from_environment({"CARE_OUTCOMES_REPORT_MIN_COUNT": "vijf"})


def test_a_night_whose_reports_fail_still_published_and_says_so(tmp_path):
    from pipelines.cli import RefreshReport
    from pipelines.orchestration import RunOutcome
    from pipelines.warehouse import Paths

    paths = Paths(tmp_path / "inbox", tmp_path / "warehouse" / "care_outcomes.duckdb")
    failure = "step feedback_reports failed: disk full"
    outcome = RunOutcome(
        rows_per_mart={"ips_quarterly": 47}, step_failure=failure, failed_steps={"feedback_reports": failure}
    )
    report = RefreshReport(paths, outcome)
    assert report.exit_code == 1
    assert report.lines()[-2].startswith("published: ")
    assert report.lines()[-1] == (
        "reports:   not made: step feedback_reports failed: disk full; the reports of the night before stay "
        f"({paths.reports_dir})"
    )


def test_a_missing_quarter_breaks_only_its_own_line():
    from pipelines.reporting import svg

    chart = svg.Chart(
        "Caseload", ["jan-mrt 2018", "apr-juni 2018", "juli-sept 2018"],
        [svg.Series("Programma", [50, None, 60]), svg.Series("Landelijk", [100, 110, 120], dashed=True)],
        lambda v: numbers.number(v), marked={2}, mark_note="na een ontbrekend kwartaal",
    )  # fmt: skip
    drawn = svg.line_chart(chart)
    assert drawn.count("<polyline") == 3, "the programme in two pieces, the nation in one"
    assert "juli-sept 2018 *" in drawn and "* na een ontbrekend kwartaal" in drawn
    assert drawn.count("<circle") == 5


def test_one_reports_fault_does_not_cost_the_others_theirs(sample_warehouse, tmp_path, monkeypatch):
    from pipelines.reporting import build

    real = build.IpsReport.html

    def broken(self):
        if self.program_id == "LENTIS":
            raise ValueError("template fault")
        return real(self)

    monkeypatch.setattr(build.IpsReport, "html", broken)
    made = write_reports(sample_warehouse, tmp_path / "reports", Privacy(), "off")
    assert sorted(made.ips) == ["ALTRECHT", "DIMENCE", "GGNET", "MONDRIAAN", "PARNASSIA"]
    assert made.failed == ["IPS LENTIS: template fault"]
    assert "not made: IPS LENTIS: template fault" in made.line()
    assert len(made.outflow) == 3 and (tmp_path / "reports" / "index.html").is_file()


def test_a_national_set_prints_in_two_browsers_each_page_its_own_pdf(reports, tmp_path):
    from pypdf import PdfReader

    from pipelines.reporting.build import PAGES_PER_BROWSER, print_pdfs

    chromium = chromium_or_skip()
    sources = [(p, True) for p in sorted((reports / "ips").glob("*.html"))]
    sources += [(p, False) for p in sorted((reports / "outflow").glob("*.html"))]
    pages, is_ips = [], []
    for i in range(PAGES_PER_BROWSER):  # enough pages for a second browser, IPS and outflow reports mixed
        source, ips = sources[i % len(sources)]
        pages.append(tmp_path / f"page{i:02d}.html")
        shutil.copyfile(source, pages[-1])
        is_ips.append(ips)
    done = print_pdfs(chromium, pages)
    assert done == [p.with_suffix(".pdf") for p in pages]
    # the PDF beside each page is that page's report, whichever browser printed it
    texts = ["\n".join(p.extract_text() for p in PdfReader(pdf).pages) for pdf in done]
    assert [("Tabel 1" in text) for text in texts] == is_ips


def test_a_report_that_says_what_it_said_the_night_before_is_taken_over_with_its_pdf(sample_warehouse, tmp_path):
    """A report whose figures did not change is not made and printed again: the set before's HTML and PDF go into
    the new set, with the date of the marts they were made from; a report that changed is made anew."""
    chromium = chromium_or_skip()
    # the night before: the same marts, published a week earlier
    earlier = tmp_path / "earlier.duckdb"
    shutil.copyfile(sample_warehouse, earlier)
    with duckdb.connect(str(earlier)) as con:
        con.execute("update audit.check_results set checked_at = checked_at - interval 7 day")
        before_date = con.execute("select max(checked_at) from audit.check_results").fetchone()[0].date()
    target = tmp_path / "reports"
    first = write_reports(earlier, target, Privacy(min_count=5), chromium)
    assert first.unchanged == 0 and len(first.pdfs) == len(first.national) + len(first.ips) + len(first.outflow)
    first_set = target.resolve()

    # tonight: the same marts, and a lower threshold for per-location counts (the outflow reports change)
    second = write_reports(sample_warehouse, target, Privacy(min_count=3), chromium)
    second_set = target.resolve()
    assert second.unchanged == len(second.ips) + len(second.national) == 8, "every IPS report says what it said"
    assert f"; {second.unchanged} unchanged from the set before" in second.line()
    assert len(second.pdfs) == len(second.national) + len(second.ips) + len(second.outflow)
    for name in (p.name for p in (first_set / "ips").glob("*.html")):
        for suffix in (".html", ".pdf"):
            old, new = first_set / "ips" / name, second_set / "ips" / name
            assert (second_set / "ips" / Path(name).with_suffix(suffix)).samefile(old.with_suffix(suffix)), name
        assert "uit de marts van " + common.dutch_date(before_date) in new.read_text(encoding="utf-8")
    changed = second_set / "outflow" / "ict-maatwerk.html"
    assert not changed.samefile(first_set / "outflow" / "ict-maatwerk.html")
    assert (second_set / "outflow" / "ict-maatwerk.pdf").stat().st_mtime >= changed.stat().st_mtime
    assert "uit de marts van " + common.dutch_date(before_date) not in changed.read_text(encoding="utf-8")
    # the index is tonight's, and links every report's PDF
    index = unescape((second_set / "index.html").read_text(encoding="utf-8"))
    assert common.dutch_date(before_date) not in index and index.count(".pdf") >= len(second.pdfs)

    # without Chromium tonight, a report taken over comes without its PDF, as every other report does
    third = write_reports(sample_warehouse, target, Privacy(min_count=3), "off")
    assert third.unchanged == 11 and not third.pdfs and not list(target.resolve().rglob("*.pdf"))
    # the night after, with Chromium again: the reports are taken over, their PDFs made anew
    fourth = write_reports(sample_warehouse, target, Privacy(min_count=3), chromium)
    assert fourth.unchanged == 0 and len(fourth.pdfs) == 11
    # a set with nothing to print: the browser started while its HTML was written is closed all the same
    fifth = write_reports(sample_warehouse, target, Privacy(min_count=3), chromium)
    assert fifth.unchanged == 11 and len(fifth.pdfs) == 11 and not _browsers()


def _browsers() -> list[str]:
    """The command lines of this process's Chromium children still running."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            state, parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (proc / "cmdline").read_text()
        except OSError:  # ended meanwhile
            continue
        if int(parent) == os.getpid() and state != "Z" and "chrom" in cmdline.lower():
            found.append(cmdline)
    return found


def test_a_set_that_fails_leaves_no_browser_behind(tmp_path):
    """The browser is started as the set begins, while its HTML is written: a set that fails before its PDFs closes
    it (here: no serving file to read)."""
    chromium = chromium_or_skip()
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the missing file raises; the browser is the point
        write_reports(tmp_path / "missing.duckdb", tmp_path / "reports", Privacy(), chromium)
    assert not _browsers()


def test_a_browser_that_dies_costs_the_pdfs_only(sample_warehouse, tmp_path):
    """A browser that stops at once leaves the set without PDFs and says why; the night neither waits for it nor
    loses an HTML report."""
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\nexit 3\n", encoding="utf-8")
    broken.chmod(0o755)
    made = write_reports(sample_warehouse, tmp_path / "reports", Privacy(), str(broken))
    assert len(made.ips) == 6 and len(made.outflow) == 3 and not made.pdfs
    assert made.pdf_problem is not None and "Chromium stopped" in made.pdf_problem
    assert not list((tmp_path / "reports").rglob("*.pdf"))
    assert "Geen PDF's" in unescape((tmp_path / "reports" / "index.html").read_text(encoding="utf-8"))
