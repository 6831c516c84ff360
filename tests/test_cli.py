"""`care-outcomes refresh` as a user runs it: summary, exit codes, empty inboxes, bad files, the key rule."""

from __future__ import annotations

import subprocess
import sys

import duckdb

from tests.conftest import MARTS, clean_env, run_refresh

KEY = {"CARE_OUTCOMES_PSEUDONYM_KEY": "test-key"}


def test_sample_refresh_prints_a_summary(sample_build):
    warehouse, done = sample_build
    out = done.stdout
    assert "files:     25 loaded (451 rows), 0 quarantined, 0 duplicate" in out
    assert "ips_quarterly 47" in out and "ips_yearly_national 2" in out and "outflow_summary 4" in out
    assert "checks:" in out and " 0 failed" in out
    assert f"published: {warehouse}" in out
    assert "Traceback" not in done.stderr


def test_serving_file_holds_marts_and_audit(serving):
    tables = set(serving.execute("select table_schema || '.' || table_name from information_schema.tables").fetchall())
    assert sorted(t for (t,) in tables if t.startswith("marts.")) == [f"marts.{m}" for m in MARTS]
    for name in (
        "marts.ips_quarterly",
        "marts.ips_yearly",
        "marts.ips_quarterly_national",
        "marts.ips_yearly_national",
        "marts.ips_benchmark",
        "audit.file_loads",
        "audit.check_results",
    ):
        assert (name,) in tables
    statuses = serving.execute("select status, count(*) from audit.file_loads group by all").fetchall()
    assert statuses == [("loaded", 25)]
    columns = [r[0] for r in serving.execute("describe audit.file_loads").fetchall()]
    assert columns[1:] == ["file_name", "source", "status", "rows_loaded", "error", "sha256", "loaded_at"]
    failed = serving.execute(
        "select check_name from audit.check_results where not passed and severity = 'ERROR'"
    ).fetchall()
    assert failed == [] and serving.execute("select count(*) from audit.check_results").fetchall()[0][0] > 80
    warnings = serving.execute("select check_name from audit.check_results where not passed").fetchall()
    assert warnings == [("gx_ips_quarterly_gaps",)]


def test_parquet_export_beside_the_serving_file(sample_warehouse):
    parquet = sample_warehouse.parent / "parquet" / "ips_quarterly.parquet"
    assert duckdb.sql(f"select count(*) from '{parquet}'").fetchall() == [(47,)]


def test_empty_inbox_gives_empty_marts_and_a_bad_file_is_reported(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "ips_quarterly").mkdir(parents=True)
    (inbox / "ips_quarterly" / "broken.csv").write_text("program_id,year\nX,2018\n", encoding="utf-8")
    warehouse = tmp_path / "wh" / "co.duckdb"
    # settings from a .env in the working directory, as `dagster dev` reads them too
    (tmp_path / ".env").write_text(
        f"CARE_OUTCOMES_INBOX={inbox}\nCARE_OUTCOMES_WAREHOUSE={warehouse}\nCARE_OUTCOMES_PSEUDONYM_KEY=from-dot-env\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "refresh"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"inbox:     {inbox}" in done.stdout and f"published: {warehouse}" in done.stdout
    assert "0 loaded (0 rows), 1 quarantined" in done.stdout
    assert "quarantined: ips_quarterly/broken.csv: row 1, column 'program_name', value" not in done.stdout
    assert "column 'program_name': missing column" in done.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select count(*) from marts.ips_quarterly").fetchall() == [(0,)]
    assert con.execute("select count(*) from marts.ips_quarterly_national").fetchall() == [(0,)]
    assert con.execute("select status from audit.file_loads").fetchall() == [("quarantined",)]
    con.close()
    assert list((warehouse.parent / "quarantine").glob("*_broken.csv"))


def test_other_inbox_needs_a_pseudonym_key(tmp_path):
    (tmp_path / "outflow").mkdir()
    done = run_refresh(tmp_path, tmp_path / "co.duckdb")
    assert done.returncode == 2
    assert "CARE_OUTCOMES_PSEUDONYM_KEY is not set" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "co.duckdb").exists()


def test_a_broken_source_yaml_stops_the_refresh_with_the_registrys_message(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "ons_systeem.yaml").write_text("name: ons_systeem\ncontract: outflow\n", encoding="utf-8")
    done = run_refresh(tmp_path, tmp_path / "co.duckdb", {"CARE_OUTCOMES_SOURCES_DIR": str(sources), **KEY})
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "ons_systeem.yaml: folder: Field required" in last and "Traceback" not in done.stderr
    assert not (tmp_path / "co.duckdb").exists()
