"""Backup and restore (issue 28): a consistent, checksummed copy of a warehouse that restores elsewhere and goes on;
a damaged backup is refused with one line. And the systemd units of deploy/ verify with systemd-analyze."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import MARTS, ROOT, SAMPLE, clean_env, run_refresh
from tests.test_postgres import assert_same_rows, table_rows

KEY = "backup-test-key-that-must-stay-out-of-the-backup"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(**(env or {})),
        timeout=300,
    )


def marts_of(serving_file) -> dict[str, list[tuple]]:
    with duckdb.connect(str(serving_file), read_only=True) as con:
        return {m: table_rows(con, f"select * exclude (received_at) from marts.{m}" if m == "ips_submissions"
                              else f"select * from marts.{m}") for m in MARTS}  # fmt: skip


def test_backup_restore_elsewhere_serves_the_same_marts_and_the_next_night_goes_on(sample_warehouse, tmp_path):
    inbox = tmp_path / "inbox"
    for folder in ("ips_quarterly", "outflow_zorgdossier"):  # two sources are enough, and quicker than the sample
        shutil.copytree(SAMPLE / folder, inbox / folder)
    warehouse = tmp_path / "site" / "care_outcomes.duckdb"
    assert run_refresh(inbox, warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": KEY}).returncode == 0
    backup_dir = tmp_path / "backups" / "2026-12-04"
    done = cli("backup", str(backup_dir), "--warehouse", str(warehouse))
    assert done.returncode == 0, done.stderr
    assert "checksums in manifest.json" in done.stdout and "the key is not in it" in done.stdout
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert {"care_outcomes.work.duckdb", "care_outcomes.duckdb"} <= set(manifest["files"])
    assert any(name.startswith("parquet/") for name in manifest["files"])
    assert any(name.startswith("reports/") for name in manifest["files"])
    assert manifest["key_fingerprint"]  # the fingerprint, never the key
    everything = b"".join(p.read_bytes() for p in backup_dir.rglob("*") if p.is_file())
    assert KEY.encode() not in everything and not any("quarantine" in n for n in manifest["files"])

    # restore elsewhere: the same marts are served
    restored = tmp_path / "elsewhere" / "care_outcomes.duckdb"
    done = cli("restore", str(backup_dir), "--warehouse", str(restored))
    assert done.returncode == 0, done.stderr
    before = marts_of(warehouse)
    after = marts_of(restored)
    for mart in MARTS:
        assert_same_rows(before[mart], after[mart], mart)
    assert (restored.parent / "parquet" / "ips_quarterly.parquet").exists()
    assert before["ips_quarterly"] and before["outflow_summary"]
    assert (restored.parent / "reports" / "index.html").exists()

    # the next night with a new file publishes from where the backup was
    late = inbox / "ips_quarterly" / "lentis_2019q1.csv"
    late.write_text(
        "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
        "outflow_successful,outflow_unsuccessful\nLENTIS,Lentis IPS Groningen,2019,1,90,12,4.5,30,25,5,3,2\n",
        encoding="utf-8",
    )
    done = run_refresh(inbox, restored, env={"CARE_OUTCOMES_PSEUDONYM_KEY": KEY})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files:     1 loaded (1 rows)" in done.stdout
    with duckdb.connect(str(restored), read_only=True) as con:
        assert con.execute(
            "select caseload, paid_work from marts.ips_quarterly "
            "where program_id = 'LENTIS' and period_code = '2019-K1'"
        ).fetchall() == [(90, 30)]
        quarters = con.execute("select count(*) from marts.ips_quarterly").fetchall()[0][0]
    assert quarters == len(before["ips_quarterly"]) + 1

    # a live warehouse is not overwritten unless told
    done = cli("restore", str(backup_dir), "--warehouse", str(restored))
    assert done.returncode == 2 and "already holds a warehouse" in done.stderr and "--force" in done.stderr


@pytest.fixture(scope="module")
def sample_backup(sample_warehouse, tmp_path_factory) -> Path:
    """One backup of (a copy of) the sample warehouse; each test damages a copy of it."""
    root = tmp_path_factory.mktemp("backup")
    copy = root / "wh" / sample_warehouse.name
    shutil.copytree(sample_warehouse.parent, copy.parent, ignore=shutil.ignore_patterns("*.lock", "dagster_home"))
    assert cli("backup", str(root / "backup"), "--warehouse", str(copy)).returncode == 0
    return root / "backup"


@pytest.mark.parametrize("damage", ["changed", "missing", "extra", "manifest"])
def test_a_damaged_backup_is_refused_with_one_line(sample_backup, tmp_path, damage):
    backup_dir = tmp_path / "backup"
    shutil.copytree(sample_backup, backup_dir)
    work = backup_dir / "care_outcomes.work.duckdb"
    if damage == "changed":
        with work.open("r+b") as fh:
            fh.seek(5000)
            fh.write(b"\x00garbage\x00")
    elif damage == "missing":
        next(backup_dir.glob("parquet/*.parquet")).unlink()
    elif damage == "extra":
        (backup_dir / "reports" / "planted.html").write_text("<script></script>")
    else:
        (backup_dir / "manifest.json").write_text("{not json")
    target = tmp_path / "restored" / "care_outcomes.duckdb"
    done = cli("restore", str(backup_dir), "--warehouse", str(target))
    assert done.returncode == 2
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("restore failed: restore: "), line
    assert ("damaged" in line) if damage != "manifest" else ("not a care-outcomes backup" in line)
    assert not target.exists() and not (target.parent / "care_outcomes.work.duckdb").exists()


def test_a_backup_waits_for_no_one_and_refuses_a_busy_warehouse_and_a_used_folder(sample_warehouse, tmp_path):
    from pipelines.warehouse import resolve_paths, writer_lock

    copy = tmp_path / "wh" / sample_warehouse.name
    shutil.copytree(sample_warehouse.parent, copy.parent, ignore=shutil.ignore_patterns("*.lock", "dagster_home"))
    with writer_lock(resolve_paths(None, copy)):  # a refresh is writing
        done = cli("backup", str(tmp_path / "b1"), "--warehouse", str(copy))
    assert done.returncode == 2 and "another refresh is writing" in done.stderr
    assert not (tmp_path / "b1").exists() and not list(tmp_path.glob(".b1.partial-*"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    done = cli("backup", str(tmp_path / "used"), "--warehouse", str(copy))
    assert done.returncode == 2 and "exists and is not empty" in done.stderr


# ---- deploy/ ---------------------------------------------------------------------------------------------------


def test_the_systemd_units_verify(tmp_path):
    if os.environ.get("CARE_OUTCOMES_SECONDARY_PYTHON"):
        pytest.skip("the units are checked on the main Python only (make test-py313 runs the rest on Python 3.13)")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            raise AssertionError("systemd-analyze is missing: .ci/run installs Debian's systemd package")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    units = sorted((ROOT / "deploy" / "systemd").glob("care-outcomes*.[st]*[er]"))
    assert {u.name for u in units} == {
        "care-outcomes-dagster-daemon.service",
        "care-outcomes-webserver.service",
        "care-outcomes-refresh.service",
        "care-outcomes-refresh.timer",
    }
    for unit in units:  # installed in /opt/care-outcomes; here the checkout stands in for it
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/care-outcomes", str(ROOT)))
    done = subprocess.run(
        [analyze, "verify", *[str(tmp_path / u.name) for u in units]], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    # every command the units start exists in the project's venv
    for unit in units:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                command = line.split("=", 1)[1].split()[0].replace("/opt/care-outcomes", str(ROOT))
                assert os.access(command, os.X_OK), command
    # the environment template names every setting the units and the README rely on
    template = (ROOT / "deploy" / "systemd" / "care-outcomes.env.example").read_text()
    for setting in ("CARE_OUTCOMES_INBOX", "CARE_OUTCOMES_WAREHOUSE", "CARE_OUTCOMES_PSEUDONYM_KEY",
                    "CARE_OUTCOMES_ALERT_WEBHOOK", "CARE_OUTCOMES_ALERT_SMTP", "CARE_OUTCOMES_UI_URL"):  # fmt: skip
        assert f"\n{setting}=" in template, setting
