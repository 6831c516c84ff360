"""Great Expectations suites as blocking checks: they pass on the sample, catch broken marts, stop the publish."""

from __future__ import annotations

import hashlib
import shutil

import duckdb
import pytest

from data_quality.runner import run_suite
from data_quality.suites import ALL_SUITES
from pipelines.transform.project import DBT_DIR
from tests.conftest import SAMPLE, run_refresh

SUITES = {s.name: s for s in ALL_SUITES}


@pytest.fixture(scope="module")
def work_copy(sample_warehouse, tmp_path_factory):
    """A copy of the sample's working database (same file name: dbt-duckdb names the catalog after it)."""
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    target = tmp_path_factory.mktemp("quality") / work.name
    shutil.copy(work, target)
    return target


def test_every_blocking_suite_passes_on_the_sample(work_copy):
    con = duckdb.connect(str(work_copy), read_only=True)
    outcomes = {s.name: run_suite(con, s) for s in ALL_SUITES}
    con.close()
    assert {n: o.summary() for n, o in outcomes.items() if SUITES[n].blocking and not o.success} == {}
    gaps = outcomes["ips_quarterly_gaps"]
    assert not gaps.success and gaps.failures[0]["examples"] == [
        {"follows_gap": True, "program_id": "DIMENCE", "year": 2018, "quarter": 3}
    ], "Dimence misses 2018 Q2: its Q3 is flagged (as a warning)"


@pytest.mark.parametrize(
    "suite, corruption, expected",
    [
        (
            "ips_quarterly",
            "update marts.ips_quarterly set paid_work_rate = 1.5 "
            "where program_id = 'GGNET' and year = 2018 and quarter = 1",
            ["paid_work_rate", '"GGNET"', '"year": 2018'],
        ),
        (
            "ips_quarterly",
            "update marts.ips_quarterly set clients_per_fte = clients_per_fte * 2 where program_id = 'LENTIS'",
            ["clients_per_fte_error", "LENTIS"],
        ),
        (
            "ips_quarterly",
            "update marts.ips_quarterly set follows_gap = false where program_id = 'DIMENCE'",
            ["follows_gap", "has_gap", "DIMENCE"],
        ),
        (
            "ips_quarterly",
            "update marts.ips_quarterly set uwv_norm_rate = 1.2 where program_id = 'ALTRECHT' and quarter = 2",
            ["uwv_norm_rate", "ALTRECHT"],
        ),
        (
            "ips_quarterly",
            "insert into marts.ips_quarterly "
            "select * from marts.ips_quarterly where program_id = 'GGNET' and year = 2017 and quarter = 1",
            ["expect_compound_columns_to_be_unique"],
        ),
        (
            "raw_ips_quarterly",
            "update raw.ips_quarterly set paid_work_uwv = paid_work + 1 where program_id = 'GGNET'",
            ["uwv_over_paid_work"],
        ),
        (
            "outflow_by_destination",
            "update marts.outflow_by_destination set outflow_share = outflow_share + 0.01 "
            "where destination = 'opleiding'",
            ["share_sum_error", "ICT Maatwerk"],
        ),
        (
            "outflow_by_destination",
            "delete from marts.outflow_by_destination where destination = 'pensioen' and provider = 'ICT Maatwerk'",
            ["missing_destinations"],
        ),
        (
            "outflow_summary",
            "update marts.outflow_summary set regular_count = regular_count + 1 "
            "where provider = 'ICT Maatwerk' and year = 2023",
            ["regular_count_error", "ICT Maatwerk", "2023"],
        ),
        (
            "fidelity_totals",
            "update marts.fidelity_totals set total_ips_a = 111 where program_id = 'GGNET'",
            ["total_ips_a", "sum_a", "GGNET"],
        ),
        (
            "fidelity_items",
            "update marts.fidelity_items set score_ips_o = 7 where program_id = 'GGNET' and item_code = 'BG2'",
            ["score_ips_o", "BG2"],
        ),
        (
            "raw_outflow",
            "update raw.outflow set client_id = 'C123456' where provider = 'De Werkplaats'",
            ["not_pseudonymised"],
        ),
    ],
)
def test_suite_catches_a_broken_table(work_copy, tmp_path, suite, corruption, expected):
    broken = tmp_path / work_copy.name
    shutil.copy(work_copy, broken)
    con = duckdb.connect(str(broken))
    con.execute(corruption)
    outcome = run_suite(con, SUITES[suite])
    con.close()
    assert not outcome.success
    summary = outcome.summary()
    for piece in expected:
        assert piece in summary, summary


def test_check_results_are_in_the_serving_file(serving):
    found = dict(
        serving.execute("select check_name, passed from audit.check_results where check_name like 'gx_%'").fetchall()
    )
    assert {f"gx_{s.name}" for s in ALL_SUITES} == set(found)
    assert found["gx_ips_quarterly_gaps"] is False and found["gx_ips_quarterly"] is True
    (severity,) = serving.execute(
        "select severity from audit.check_results where check_name = 'gx_ips_quarterly_gaps'"
    ).fetchone()
    assert severity == "WARN"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_failed_blocking_check_stops_the_publish_and_keeps_the_served_marts(sample_warehouse, tmp_path):
    """A mart broken on purpose (clients_per_fte off by one, which no dbt test catches) must not be served."""
    served = tmp_path / "warehouse"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    warehouse = served / sample_warehouse.name
    broken_dbt = tmp_path / "dbt"
    shutil.copytree(DBT_DIR, broken_dbt, ignore=shutil.ignore_patterns("target", "logs"))
    model = broken_dbt / "models" / "marts" / "ips_quarterly.sql"
    sql = model.read_text(encoding="utf-8")
    assert "{{ safe_divide('caseload', 'fte') }} as clients_per_fte" in sql
    model.write_text(
        sql.replace(
            "{{ safe_divide('caseload', 'fte') }} as clients_per_fte",
            "{{ safe_divide('caseload', 'fte') }} + 1 as clients_per_fte",
        ),
        encoding="utf-8",
    )
    served_files = [
        warehouse,
        *sorted((served / "parquet").glob("*.parquet")),
        *sorted((served / "reports").rglob("*.*")),
    ]
    before = {p.name: _digest(p) for p in served_files}
    assert any(p.name == "GGNET.html" for p in served_files)

    done = subprocess_refresh(warehouse, broken_dbt)

    assert done.returncode == 1
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("refresh failed: blocking check failed: marts/ips_quarterly: gx_ips_quarterly (ERROR)")
    assert "clients_per_fte_error" in last and "program_id" in last, "the failing rows are named"
    assert "the served marts stay as they were" in last
    assert "Traceback" not in done.stdout + done.stderr
    after = {p.name: _digest(p) for p in served_files}
    assert after == before, "marts, Parquet and reports stay as they were"


def subprocess_refresh(warehouse, dbt_dir):
    return run_refresh(SAMPLE, warehouse, args=("--dbt-project", str(dbt_dir)))
