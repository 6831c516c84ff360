"""Marts a BI tool can use as they are: periods, counts beside rates, Dutch labels from one catalogue, the
national spread and benchmarks in long form, submission monitoring, ladder transitions, a serving file that
documents itself, real BI clients, and refreshes from the command line recorded in the Dagster instance.

Every figure is checked against an independent computation from the sample files (tests.test_ips_national)
or a worked example."""

from __future__ import annotations

import csv
import datetime as dt
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pytest

from tests.conftest import MARTS, ROOT, SAMPLE, rows
from tests.test_ingest import HEADER
from tests.test_ips_national import _records, expected_quarterly

SEEDS = ROOT / "dbt" / "seeds"

# The quarters as the published IPS report prints them (Table 1, "Periode"), and GGNet's counts (SPEC section 7).
REPORT_PERIODS = ["jan-mrt 2017", "apr-juni 2017", "juli-sept 2017", "okt-dec 2017",
                  "jan-mrt 2018", "apr-juni 2018", "juli-sept 2018", "okt-dec 2018"]  # fmt: skip
GGNET_COUNTS = {  # (year, quarter): paid_work_uwv, education, outflow_successful, outflow_unsuccessful
    (2017, 1): (15, 0, 1, 3), (2017, 2): (8, 0, 2, 8), (2017, 3): (10, 2, 2, 1), (2017, 4): (38, 2, 8, 4),
    (2018, 1): (31, 2, 2, 7), (2018, 2): (20, 3, 30, 10), (2018, 3): (50, 4, 12, 10), (2018, 4): (53, 6, 5, 6),
}  # fmt: skip
# The column headers of the report's Tables 1-3: the metric catalogue labels the marts with exactly these.
REPORT_LABELS = {
    "caseload": "Aantal cliënten",
    "new_clients": "Aantal nieuw ingestroomde cliënten",
    "fte": "FTE trajectbegeleider",
    "clients_per_fte": "Aantal cliënten per FTE",
    "caseload_growth": "% Groei caseload",
    "paid_work_rate": "% Betaald werk",
    "paid_work_uwv_rate": "% Betaald werk volgens UWV",
    "education_rate": "% Opleiding",
    "uwv_norm_rate": "% Werkenden dat voldoet aan UWV norm",
    "paid_work_growth": "Groei % werk t.o.v. vorig kwartaal",
    "education_growth": "Groei % opleiding t.o.v. vorig kwartaal",
    "successful_outflow_rate": "% Succesvol uitgestroomd",
    "unsuccessful_outflow_rate": "% Onsuccesvol uitgestroomd",
    "successful_outflow_growth": "Groei % succesvolle uitstroom t.o.v. vorig kwartaal",
    "unsuccessful_outflow_growth": "Groei % onsuccesvolle uitstroom t.o.v. vorig kwartaal",
    "total_caseload": "Totale caseload",
}


def seed(name: str) -> list[dict]:
    with (SEEDS / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# --- periods and counts -------------------------------------------------------------------------


def test_quarterly_marts_carry_period_columns_as_the_report_writes_them(serving):
    ggnet = rows(serving, "select * from marts.ips_quarterly where program_id = 'GGNET' order by year, quarter")
    assert [r["period_label"] for r in ggnet] == REPORT_PERIODS
    assert [r["period_code"] for r in ggnet] == [f"{y}-K{q}" for y in (2017, 2018) for q in (1, 2, 3, 4)]
    assert [r["period_start"] for r in ggnet] == [dt.date(y, m, 1) for y in (2017, 2018) for m in (1, 4, 7, 10)]
    periodic = [
        t for (t,) in serving.execute(
            "select table_name from duckdb_columns() where schema_name = 'marts' and column_name = 'year' "
            "and database_name = current_database()"
        ).fetchall()
    ]  # fmt: skip
    assert len(periodic) == 12, periodic
    for mart in periodic:  # every period mart: a date, a code that sorts as the dates do, a label
        columns = {c[0] for c in serving.execute(f"describe marts.{mart}").fetchall()}
        assert {"period_start", "period_code", "period_label"} <= columns, mart
        quarterly = "quarter" in columns
        bad = serving.execute(
            f"select count(*) from marts.{mart} where "
            + ("period_start <> make_date(year, 3 * quarter - 2, 1) or period_code <> year || '-K' || quarter"
               if quarterly else
               "period_start <> make_date(year, 1, 1) or period_code <> year::varchar or period_label <> year::varchar")
        ).fetchall()  # fmt: skip
        assert bad == [(0,)], mart
        by_code = serving.execute(f"select distinct period_code, period_start from marts.{mart} order by 1").fetchall()
        assert [d for _, d in by_code] == sorted(d for _, d in by_code), mart


def test_counts_stand_beside_the_rates(serving):
    ggnet = rows(serving, "select * from marts.ips_quarterly where program_id = 'GGNET'")
    got = {
        (r["year"], r["quarter"]): (
            r["paid_work_uwv"],
            r["education"],
            r["outflow_successful"],
            r["outflow_unsuccessful"],
        )
        for r in ggnet
    }
    assert got == GGNET_COUNTS
    # Figure 2 of the report without rate x caseload: education count of 2018 Q2 is 3, its rate 3 / 170
    q2 = next(r for r in ggnet if (r["year"], r["quarter"]) == (2018, 2))
    assert q2["education_rate"] == pytest.approx(q2["education"] / q2["caseload"])


# --- one metric catalogue, labels, benchmarks as data -------------------------------------------


def test_the_metric_catalogue_labels_every_metric_as_the_report_does(serving):
    catalogue = {r["metric"]: r for r in seed("metrics")}
    for metric, label in REPORT_LABELS.items():
        assert catalogue[metric]["label_nl"] == label, metric
    listed = {m for (m,) in serving.execute("select distinct metric from marts.ips_benchmark_long").fetchall()}
    assert listed <= set(catalogue)
    quarterly_columns = {
        c for (c,) in serving.execute("select column_name from (describe marts.ips_quarterly)").fetchall()
    }
    assert listed == quarterly_columns - {"program_id", "program_name", "year", "quarter", "period_start",
                                          "period_code", "period_label", "follows_gap"}  # fmt: skip
    labels = rows(serving, "select distinct metric, metric_label from marts.ips_benchmark_long")
    assert all(r["metric_label"] == catalogue[r["metric"]]["label_nl"] for r in labels)


def test_dutch_labels_for_destination_groups_and_fidelity_bands(serving):
    groups = dict(
        serving.execute(
            "select distinct destination_group, destination_group_label from marts.outflow_by_location"
        ).fetchall()
    )
    # as the outflow report's legend prints them
    assert groups == {
        "regulier": "Regulier",
        "thuis": "Thuis",
        "andere_dagbesteding": "Andere dagbesteding",
        "overige": "Overige",
    }
    (ggnet,) = rows(
        serving, "select band_ips_a_label, band_ips_o_label from marts.fidelity_totals where program_id = 'GGNET'"
    )
    assert ggnet == {"band_ips_a_label": "Goede IPS", "band_ips_o_label": "Goede IPS"}


def test_benchmarks_hold_the_published_thresholds_and_agree_with_the_fidelity_bands():
    bench = {(r["benchmark_set"], r["band"]): r for r in seed("benchmarks")}
    assert [float(bench[("ips_employment_center", b)]["lower_bound"]) for b in ("minimal", "average", "excellent")] == [
        0.31,
        0.41,
        0.50,
    ]
    assert float(bench[("ips_grow_uk", "uk_target")]["lower_bound"]) == 0.40
    assert float(bench[("ips_fidelity_item_1", "within_norm")]["upper_bound"]) == 20
    assert all(r["source"] for r in bench.values())
    # the band macro (dbt/macros/fidelity.sql) uses per-mille thresholds; the seeds state the published scale
    macro = (ROOT / "dbt" / "macros" / "fidelity.sql").read_text()
    per_mille = [int(x) / 1000 for x in re.findall(r"1000 \* \{\{ total \}\} >= (\d+)", macro)]
    bands = {r["band"]: r for r in seed("fidelity_bands")}
    assert per_mille == [float(bands[b]["min_share"]) for b in ("exemplary", "good", "fair")]
    assert [int(bands[b]["ips25_min_of_125"]) / 125 for b in ("exemplary", "good", "fair")] == [0.92, 0.80, 0.592]
    assert per_mille == [float(bench[("ips25_fidelity", b)]["lower_bound"]) for b in ("exemplary", "good", "fair")]


# --- ips_benchmark_long: spread, rank, bands -----------------------------------------------------


def test_benchmark_long_against_an_independent_computation(serving):
    quarterly = expected_quarterly()
    published = rows(serving, "select * from marts.ips_benchmark_long")
    assert len(published) == len(quarterly) * 20
    by_quarter = defaultdict(dict)
    for (pid, year, quarter), metrics in quarterly.items():
        by_quarter[(year, quarter)][pid] = metrics
    national = {(r["year"], r["quarter"]): r for r in rows(serving, "select * from marts.ips_quarterly_national")}
    for row in published:
        programmes = by_quarter[(row["year"], row["quarter"])]
        values = sorted(p[row["metric"]] for p in programmes.values() if p[row["metric"]] is not None)
        own = programmes[row["program_id"]][row["metric"]]
        what = f"{row['program_id']} {row['year']}Q{row['quarter']} {row['metric']}"
        assert row["value"] == pytest.approx(own) if own is not None else row["value"] is None, what
        assert row["n_programs"] == len(values), what
        assert row["rank"] == (1 + sum(v > own for v in values) if own is not None else None), what
        # the disclosure rule: a mean needs 3 programmes besides the reader, quartiles 5 programmes
        assert row["national_suppressed"] is (len(values) - 1 < 3), what
        if len(values) >= 5:
            p25, median, p75 = statistics.quantiles(values, n=4, method="inclusive")
            assert (row["national_p25"], row["national_median"], row["national_p75"]) == pytest.approx(
                (p25, median, p75)
            )
        else:
            assert row["national_p25"] is row["national_median"] is row["national_p75"] is None, what
        if len(values) >= 4:
            assert row["national_value"] == pytest.approx(national[(row["year"], row["quarter"])][row["metric"]])
        else:
            assert row["national_value"] is None, what


def test_benchmark_bands_follow_the_published_thresholds(serving):
    (ggnet,) = rows(
        serving,
        "select value, benchmark_band from marts.ips_benchmark_long "
        "where program_id = 'GGNET' and year = 2017 and quarter = 1 and metric = 'paid_work_rate'",
    )
    assert ggnet == {"value": pytest.approx(0.44), "benchmark_band": "average"}  # 33/75 = 44%: 41% <= x < 50%
    for r in rows(
        serving, "select value, benchmark_band from marts.ips_benchmark_long where metric = 'clients_per_fte'"
    ):
        assert r["benchmark_band"] == ("within_norm" if r["value"] <= 20 else "above_norm")
    others = serving.execute(
        "select count(*) from marts.ips_benchmark_long "
        "where metric not in ('paid_work_rate', 'clients_per_fte') and benchmark_band is not null"
    ).fetchall()
    assert others == [(0,)]
    labels = {(r["metric"], r["band"]): r["label_nl"] for r in seed("benchmarks")}
    banded = rows(
        serving,
        "select distinct metric, benchmark_band, benchmark_band_label from marts.ips_benchmark_long "
        "where benchmark_band is not null",
    )
    assert {"Gemiddeld", "Binnen norm (max. 20)"} <= {r["benchmark_band_label"] for r in banded}
    assert all(r["benchmark_band_label"] == labels[(r["metric"], r["benchmark_band"])] for r in banded)


def test_ladder_steps_carry_their_dutch_labels(serving):
    steps = dict(serving.execute("select ladder_step, label_nl from reference.ladder_steps").fetchall())
    assert steps == {1: "Geïsoleerd", 2: "Sociale contacten buiten de deur",
                     3: "Deelname aan georganiseerde activiteiten", 4: "Onbetaald werk",
                     5: "Betaald werk met ondersteuning", 6: "Betaald werk"}  # fmt: skip
    for r in rows(serving, "select distinct ladder_step, ladder_step_label from marts.outflow_by_destination"):
        assert r["ladder_step_label"] == steps.get(r["ladder_step"]), r
    for r in rows(serving, "select distinct step_start, step_start_label, step_end, step_end_label "
                           "from marts.outflow_ladder_transitions"):  # fmt: skip
        assert (r["step_start_label"], r["step_end_label"]) == (steps[r["step_start"]], steps[r["step_end"]])


def test_the_d3_formats_print_what_the_reports_print(serving):
    """Superset formats with d3-format; with a Dutch d3 locale (decimal ',', thousands '.') each metric's d3_format
    must print as the reports' Excel-style number_format does. Python's format() reads these specifiers as d3 does."""
    from pipelines.reporting import numbers

    def d3_dutch(value: float, spec: str) -> str:
        return format(value, spec).replace(",", "_").replace(".", ",").replace("_", ".")

    catalogue = rows(serving, "select metric, number_format, d3_format from reference.metrics")
    assert catalogue and all(r["d3_format"] for r in catalogue)
    for r in catalogue:
        for value in (0.0, 0.44125, 0.5, 7.456, 1234.5678, 1_234_567.0):
            assert d3_dutch(value, r["d3_format"]) == numbers.formatted(value, r["number_format"]), (r, value)


# --- submission monitoring ----------------------------------------------------------------------


def test_submissions_show_received_resubmitted_and_missing_quarters(serving):
    received = _records()
    statuses = Counter(serving.execute("select status from marts.ips_submissions").fetchall())
    sent_twice = rows(
        serving,
        "select program_id, year, quarter, versions, file_name from marts.ips_submissions where status = 'resubmitted'",
    )
    assert sent_twice == [{"program_id": "PARNASSIA", "year": 2018, "quarter": 3, "versions": 2,
                           "file_name": "ips_quarterly/parnassia_2018q3_correctie.csv"}]  # fmt: skip
    missing = rows(
        serving, "select program_id, year, quarter, versions from marts.ips_submissions where status = 'missing'"
    )
    assert missing == [{"program_id": "DIMENCE", "year": 2018, "quarter": 2, "versions": 0}]
    assert statuses[("received",)] + statuses[("resubmitted",)] == len(received)
    # every programme's row runs from its first quarter to the latest quarter anyone reported
    assert serving.execute("select count(distinct (year, quarter)) from marts.ips_submissions").fetchall() == [(8,)]


def test_the_refresh_warns_and_lists_programmes_missing_the_latest_quarter(tmp_path):
    from tests.conftest import run_refresh

    inbox = tmp_path / "inbox"
    (inbox / "ips_quarterly").mkdir(parents=True)
    lines = [f"{p},{p},2018,{q},80,5,6.3,30,20,2,1,3" for p in ("A", "B", "C") for q in (1, 2) if (p, q) != ("C", 2)]
    (inbox / "ips_quarterly" / "q.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    done = run_refresh(inbox, tmp_path / "wh" / "co.duckdb", {"CARE_OUTCOMES_PSEUDONYM_KEY": "k"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "missing:   latest quarter not received from C (2018-K2)" in done.stdout
    assert re.search(r"warning: marts/ips_submissions: gx_ips_submissions_latest \(WARN\).*'?C'?", done.stdout)
    con = duckdb.connect(str(tmp_path / "wh" / "co.duckdb"), read_only=True)
    (check,) = rows(
        con, "select passed, blocking from audit.check_results where check_name = 'gx_ips_submissions_latest'"
    )
    assert check == {"passed": False, "blocking": False}
    con.close()


# --- ladder transitions -------------------------------------------------------------------------


def test_ladder_transitions_against_the_export(serving):
    counts = Counter()
    for path in sorted((SAMPLE / "outflow_zorgdossier").glob("*.csv")):
        with path.open(encoding="cp1252", newline="") as fh:
            for r in csv.DictReader(fh, delimiter=";"):
                start, end = r["Trede participatieladder start"], r["Trede participatieladder eind"]
                if start and end:
                    counts[(int(r["Einddatum"][-4:]), int(start), int(end))] += 1
    for year in (2022, 2023):
        total = sum(n for (y, _, _), n in counts.items() if y == year)
        published = rows(
            serving,
            "select step_start, step_end, n, share from marts.outflow_ladder_transitions "
            "where provider = 'ICT Maatwerk' and year = ? order by step_start, step_end",
            [year],
        )
        assert len(published) == 36
        for r in published:
            n = counts[(year, r["step_start"], r["step_end"])]
            assert (r["n"], r["share"]) == (n, pytest.approx(n / total)), (year, r)


# --- a serving file that documents itself, read by real BI clients -------------------------------


def test_every_table_and_column_of_the_serving_file_is_described(serving):
    """The marts' comments come from dbt's YAML, the labels' from the seeds' YAML, the audit tables' from the
    publish: BI tools show them beside every table and column."""
    tables = serving.execute(
        "select schema_name || '.' || table_name from duckdb_tables() where database_name = current_database() "
        "and coalesce(comment, '') = ''"
    ).fetchall()
    columns = serving.execute(
        "select schema_name || '.' || table_name || '.' || column_name from duckdb_columns() "
        "where database_name = current_database() and coalesce(comment, '') = ''"
    ).fetchall()
    assert tables == [] and columns == []
    (comment,) = serving.execute(
        "select comment from duckdb_columns() where schema_name = 'audit' and table_name = 'file_loads' "
        "and column_name = 'status'"
    ).fetchone()
    assert "quarantined" in comment


def test_every_mart_column_carries_its_description_into_the_serving_file(serving):
    columns = rows(
        serving,
        "select table_name, column_name, comment from duckdb_columns() where schema_name = 'marts' "
        "and database_name = current_database()",
    )
    assert {r["table_name"] for r in columns} == set(MARTS)
    assert [f"{r['table_name']}.{r['column_name']}" for r in columns if not r["comment"]] == []
    (comment,) = serving.execute(
        "select comment from duckdb_columns() where table_name = 'ips_quarterly' and column_name = 'paid_work_rate'"
    ).fetchone()
    assert comment == 'paid_work / caseload ("% Betaald werk").'


def test_every_mart_has_an_enforced_contract():
    import yaml

    for mart in MARTS:
        model = yaml.safe_load((ROOT / "dbt" / "models" / "marts" / f"{mart}.yml").read_text())["models"][0]
        assert all(c.get("data_type") for c in model["columns"]), mart
    project = yaml.safe_load((ROOT / "dbt" / "dbt_project.yml").read_text())
    marts = project["models"]["care_outcomes"]["marts"]
    assert marts["+contract"] == {"enforced": True} and marts["+persist_docs"] == {"relation": True, "columns": True}


def test_parquet_holds_the_marts_and_the_audit_tables(sample_warehouse):
    parquet = sample_warehouse.parent / "parquet"
    assert sorted(p.stem for p in parquet.glob("*.parquet")) == MARTS
    audit = sorted(p.stem for p in (parquet / "audit").glob("*.parquet"))
    assert audit == ["check_results", "file_loads", "file_retractions", "file_retries", "resubmissions"]
    loads = duckdb.sql(f"select count(*) from '{parquet / 'audit' / 'file_loads.parquet'}'").fetchall()
    assert loads == [(25,)]


def readme_uri_options() -> str:
    """The options of the README's SQLAlchemy URI for Superset (what a BI administrator copies)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"^duckdb:////srv/care-outcomes/warehouse/care_outcomes\.duckdb\?(\S+)$", readme, re.M).group(1)


def assert_bi_client_sees_the_marts_only(result: dict) -> None:
    """The judgement of tests.bi_client.check: every mart reflects with its comments and a DATE period, the marts
    read, and reading or writing a server file or attaching the working database is refused."""
    assert result["marts"] == MARTS and result["uncommented"] == [], result
    assert result["period_start_is_date"] and result["quarters"] == 47, result
    assert result["attempts"] == {name: "refused" for name in ("read_text", "read_csv", "copy_to", "attach")}, result
    assert not result["file_written"]


def test_the_readmes_duckdb_uri_on_sqlalchemy_2_reflects_the_marts_and_reaches_nothing_else(sample_warehouse, tmp_path):
    # regression: with SQLAlchemy 2.1 duckdb-engine 0.17 cannot reflect columns (pg_catalog.pg_collation)
    from tests.bi_client import check

    options = readme_uri_options()
    assert "enable_external_access=false" in options and "access_mode=read_only" in options
    result = check(sample_warehouse, options, tmp_path)
    assert result["sqlalchemy"].startswith("2.0.")
    assert_bi_client_sees_the_marts_only(result)


SUPERSET_STACK = ROOT / "tests" / "superset_stack.txt"


def _superset_stack_python() -> Path:
    """A venv with Superset's own SQLAlchemy (1.4) and the README's duckdb-engine (tests/superset_stack.txt), made
    once per machine in the temporary folder and reused while the pins stay the same."""
    import hashlib
    import os
    import subprocess
    import sys
    import tempfile

    if os.environ.get("CARE_OUTCOMES_SECONDARY_PYTHON"):
        pytest.skip("Superset's stack is tested on the main Python only (make test-py313 runs the rest on 3.13)")
    pins = SUPERSET_STACK.read_text(encoding="utf-8")
    venv = (
        Path(tempfile.gettempdir()) / f"care-outcomes-superset-stack-{hashlib.sha256(pins.encode()).hexdigest()[:12]}"
    )
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(SUPERSET_STACK)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            if os.environ.get("CI"):
                raise AssertionError(f"pip could not install {SUPERSET_STACK.name}: {done.stderr[-2000:]}")
            pytest.skip(f"no package registry here to install Superset's SQLAlchemy 1.4: {done.stderr[-300:]}")
        (venv / ".installed").touch()
    return python


def test_the_readmes_duckdb_uri_on_supersets_sqlalchemy_1_4_reflects_the_marts_and_reaches_nothing_else(
    sample_warehouse, tmp_path
):
    import json
    import subprocess

    python = _superset_stack_python()
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "bi_client.py"), str(sample_warehouse), readme_uri_options(), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["sqlalchemy"].startswith("1.4."), result["sqlalchemy"]
    assert_bi_client_sees_the_marts_only(result)


def test_the_readmes_python_connection_reads_the_marts_and_nothing_else(sample_warehouse, tmp_path):
    from tests.bi_client import attempts

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'config={"enable_external_access": False}' in readme
    con = duckdb.connect(str(sample_warehouse), read_only=True, config={"enable_external_access": False})
    try:
        assert con.execute("select count(*) from marts.ips_quarterly").fetchall() == [(47,)]
        for sql in attempts(sample_warehouse, tmp_path).values():
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql)
    finally:
        con.close()
    assert not (tmp_path / "out.csv").exists()


# --- runs from the command line show in the Dagster UI -------------------------------------------


def test_cli_runs_are_recorded_in_the_dagster_instance_beside_the_warehouse(sample_warehouse):
    from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus

    home = sample_warehouse.parent / "dagster_home"
    assert (home / "dagster.yaml").exists()
    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["refresh"] and runs[0].status == DagsterRunStatus.SUCCESS
        served = instance.get_latest_materialization_event(AssetKey(["serving", "care_outcomes"]))
        assert served is not None and served.run_id == runs[0].run_id
        key = AssetCheckKey(AssetKey(["marts", "ips_quarterly"]), "gx_ips_quarterly")
        (execution,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
        assert execution.run_id == runs[0].run_id and execution.status.value == "SUCCEEDED"
    finally:
        instance.dispose()
