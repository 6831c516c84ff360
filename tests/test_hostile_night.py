"""Issue 25, a night that is cut short: killed at the wrong moment (the reports, the Parquet set), interrupted with
Ctrl-C, or leaving temporary folders behind. Every output is whole and consistent with the others, or the next
night makes it; an interrupted refresh says one line. Real refreshes in child processes, killed for real."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb

from pipelines.warehouse import TEMP_PREFIX, remove_dead_temp_folders
from tests.conftest import ROOT, SAMPLE, clean_env, refresh_command, run_refresh

KEY = {"CARE_OUTCOMES_PSEUDONYM_KEY": "night-key"}  # an inbox other than the bundled sample needs its own key
HEADER = (
    "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
    "outflow_successful,outflow_unsuccessful"
)

# `care-outcomes ARGS`, killed (SIGKILL: no handler runs, as with kill -9 or a power cut) where one function is called
KILLED_AT = textwrap.dedent("""
    import importlib, os, signal, sys
    module_name, function, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    module = importlib.import_module(module_name)
    real = getattr(module, function)
    seen = []
    def dying(*args, **kwargs):
        seen.append(1)
        if len(seen) >= calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(module, function, dying)
    from pipelines.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def killed_at(
    module: str, function: str, inbox: Path, warehouse: Path, calls: int = 1, env: dict | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", KILLED_AT, module, function, str(calls)]
    command += ["refresh", "--inbox", str(inbox), "--warehouse", str(warehouse)]
    env = clean_env(CARE_OUTCOMES_CHROMIUM="off", **{**KEY, **(env or {})})
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def small_inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLE / "ips_quarterly", inbox / "ips_quarterly")
    return inbox


def parquet_rows(warehouse: Path, mart: str) -> int:
    return duckdb.sql(f"select count(*) from '{warehouse.parent / 'parquet' / (mart + '.parquet')}'").fetchall()[0][0]


def served_rows(warehouse: Path, mart: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f"select count(*) from marts.{mart}").fetchall()[0][0]


def test_a_night_killed_in_its_reports_is_redone_by_the_next(tmp_path):
    inbox, warehouse = small_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    killed = killed_at("pipelines.reporting.assets", "write_reports", inbox, warehouse)
    assert killed.returncode == -signal.SIGKILL
    assert warehouse.exists() and not (warehouse.parent / "reports").exists(), "published, the reports not made"

    done = run_refresh(inbox, warehouse, env=KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing new" not in done.stdout, "the night before is not done: its reports are missing"
    line = next(x for x in done.stdout.splitlines() if x.startswith("reports:"))
    assert "5 IPS, 0 outflow" in line and "national " in line, line
    assert (warehouse.parent / "reports" / "index.html").exists()
    again = run_refresh(inbox, warehouse, env=KEY)
    assert "nothing new since" in again.stdout, "once every output is made, the next night has nothing to do"


def test_a_night_killed_in_its_parquet_export_leaves_the_set_before_whole(tmp_path):
    inbox, warehouse = small_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    first = run_refresh(inbox, warehouse, env=KEY)
    assert first.returncode == 0, first.stdout + first.stderr
    before = parquet_rows(warehouse, "ips_quarterly")
    assert before == served_rows(warehouse, "ips_quarterly")
    extra = "\n".join(f"EXTRA,Extra,2018,{q},80,5,6.3,30,20,2,1,3" for q in (1, 2, 3))
    (inbox / "ips_quarterly" / "extra.csv").write_text(f"{HEADER}\n{extra}\n", encoding="utf-8")

    # killed after the marts' Parquet files were written, while the audit tables' were
    killed = killed_at("pipelines.serving.publish", "_export_parquet", inbox, warehouse, calls=2)
    assert killed.returncode == -signal.SIGKILL
    assert parquet_rows(warehouse, "ips_quarterly") == before == served_rows(warehouse, "ips_quarterly")
    audit = warehouse.parent / "parquet" / "audit" / "file_loads.parquet"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        served_loads = con.execute("select count(*) from audit.file_loads").fetchall()[0][0]
    assert duckdb.sql(f"select count(*) from '{audit}'").fetchall()[0][0] == served_loads, "the set before, whole"

    done = run_refresh(inbox, warehouse, env=KEY)
    assert done.returncode == 0 and "nothing new" not in done.stdout, done.stdout + done.stderr
    assert parquet_rows(warehouse, "ips_quarterly") == before + 3 == served_rows(warehouse, "ips_quarterly")
    sets = [p for p in (warehouse.parent / ".parquet").iterdir()]
    assert len(sets) <= 2, "the published set and the one before; the killed night's half set is gone"
    assert (warehouse.parent / "parquet").is_symlink()


def wait_for(log: Path, text: str, process: subprocess.Popen, seconds: int = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {log}")


def test_ctrl_c_prints_one_line_and_nothing_else(tmp_path):
    inbox, warehouse = small_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    env = clean_env(CARE_OUTCOMES_CHROMIUM="off", **KEY)
    for moment in ("START sql table model marts.", None):
        refresh = subprocess.Popen(
            refresh_command(inbox, warehouse, "--force"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a process group of its own, as a terminal's foreground job
        )
        if moment is None:
            time.sleep(1.5)  # while it loads
        else:
            wait_for(warehouse.parent / "logs" / "last_refresh.log", moment, refresh)
        os.killpg(refresh.pid, signal.SIGINT)  # what Ctrl-C sends: to every process of the group
        out, err = refresh.communicate(timeout=120)
        assert refresh.returncode == 130, out + err
        assert out == "", out
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("refresh interrupted: "), err
        assert "nothing was published" in lines[0] or "stopped before" in lines[0]
        assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_the_temporary_folders_of_a_killed_refresh_are_removed_by_the_next(tmp_path):
    inbox, warehouse = small_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = clean_env(CARE_OUTCOMES_CHROMIUM="off", TMPDIR=str(temp), **KEY)
    refresh = subprocess.Popen(
        refresh_command(inbox, warehouse),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(warehouse.parent / "logs" / "last_refresh.log", "START sql table model marts.", refresh)
    os.killpg(refresh.pid, signal.SIGKILL)
    refresh.wait()
    left = sorted(p.name for p in temp.glob(f"{TEMP_PREFIX}dbt*"))
    assert left, "dbt's folders of the killed run are there"
    live = temp / f"{TEMP_PREFIX}dbt-{os.getpid()}-mine"  # a folder of a process that still runs stays
    live.mkdir()
    done = subprocess.run(
        refresh_command(inbox, warehouse), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [p for p in temp.glob(f"{TEMP_PREFIX}*") if p.name in left], "the dead process's folders are gone"
    assert live.exists()


def test_only_folders_of_dead_processes_or_old_unnamed_ones_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"{TEMP_PREFIX}dbt-parse-{dead.pid}-abc"
    alive = tmp_path / f"{TEMP_PREFIX}dbt-parse-{os.getpid()}-abc"
    old, new = tmp_path / f"{TEMP_PREFIX}dbt-parse-x1y2", tmp_path / f"{TEMP_PREFIX}dbt-parse-z3w4"
    other = tmp_path / "someone-elses-12-folder"
    for folder in (gone, alive, old, new, other):
        (folder / "partial").mkdir(parents=True)
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert sorted(remove_dead_temp_folders(tmp_path)) == sorted([gone, old])
    assert alive.exists() and new.exists() and other.exists()
