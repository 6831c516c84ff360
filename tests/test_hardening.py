"""One bad file never breaks a night: what a file holds decides only its own fate, operational faults end in one
line and exit 2, a person repairs with `files`, `retry`, `retract` and `--rebuild`, and no client id reaches any
message, audit table or log."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest import load as load_module
from pipelines.ingest.load import ingest_contract
from pipelines.ingest.registry import load_registry
from tests.conftest import ROOT, SAMPLE, clean_env, rows

CORPUS = ROOT / "tests" / "bad_files"
KEY = {"CARE_OUTCOMES_PSEUDONYM_KEY": "hardening-key"}
HEADER = (
    "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
    "outflow_successful,outflow_unsuccessful"
)


def cli(*args: str, env: dict | None = None, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    """`care-outcomes ARGS` in a child process, as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(**KEY, **(env or {})),
        cwd=cwd,
        timeout=300,
        **kwargs,
    )


def last_line(done: subprocess.CompletedProcess) -> str:
    return (done.stdout + done.stderr).strip().splitlines()[-1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- one file's fate never decides another's ----------------------------------------------------


def test_an_unexpected_error_in_one_file_quarantines_only_that_file(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    write(inbox / "ips_quarterly" / "a_good.csv", f"{HEADER}\nA,Een,2018,1,80,5,6.3,30,20,2,1,3\n")
    write(inbox / "ips_quarterly" / "b_odd.csv", f"{HEADER}\nB,Twee,2018,1,80,5,6.3,30,20,2,1,3\n")
    write(inbox / "ips_quarterly" / "c_good.csv", f"{HEADER}\nC,Drie,2018,1,80,5,6.3,30,20,2,1,3\n")
    real = load_module.read_cells

    def read_cells(con, path, source, named=None, fd=None):
        if (named or path).name == "b_odd.csv":  # a fault nobody foresaw, quoting a value
            raise RuntimeError("internal parser state broke on 'C555999'")
        return real(con, path, source, named, fd)

    monkeypatch.setattr(load_module, "read_cells", read_cells)
    registry = load_registry()
    con = duckdb.connect(str(tmp_path / "work.duckdb"))
    logged = []
    logger = type("Log", (), {"warning": lambda self, message: logged.append(message)})()
    loads = ingest_contract(
        con, registry, registry.contracts["ips_quarterly"], inbox, tmp_path / "quarantine", log=logger
    )
    assert [(f.file_name, f.status) for f in loads] == [
        ("ips_quarterly/a_good.csv", "loaded"),
        ("ips_quarterly/b_odd.csv", "quarantined"),
        ("ips_quarterly/c_good.csv", "loaded"),
    ]
    assert loads[1].error == "ips_quarterly/b_odd.csv: could not be read: internal parser state broke on '…'"
    assert "Traceback" not in loads[1].error and "C555999" not in loads[1].error
    assert "read_cells" in logged[0], "the traceback goes to the run log"
    assert (tmp_path / "quarantine").glob("*_b_odd.csv")


def test_a_file_that_cannot_be_opened_is_quarantined_and_recorded_once(tmp_path, monkeypatch):
    # as root (CI) a file without read permission still opens: the operating system's refusal is simulated
    inbox = tmp_path / "inbox"
    locked = write(inbox / "ips_quarterly" / "locked.csv", f"{HEADER}\nL,Slot,2018,1,80,5,6.3,30,20,2,1,3\n")
    real = load_module.open_regular

    def open_regular(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(load_module, "open_regular", open_regular)
    registry = load_registry()
    con = duckdb.connect(str(tmp_path / "work.duckdb"))
    contract = registry.contracts["ips_quarterly"]
    (load,) = ingest_contract(con, registry, contract, inbox, tmp_path / "q")
    assert load.status == "quarantined"
    assert load.error == "ips_quarterly/locked.csv: could not be read: Permission denied (its bytes could not be kept)"
    assert ingest_contract(con, registry, contract, inbox, tmp_path / "q") == [], "the next night does not repeat it"
    os.utime(locked)  # chmod changes ctime: the same file, once readable, is decided again
    time.sleep(0.01)
    locked.chmod(0o644)
    monkeypatch.setattr(load_module, "open_regular", real)
    (again,) = ingest_contract(con, registry, contract, inbox, tmp_path / "q")
    assert again.status == "loaded"


def test_same_key_twice_in_one_run_the_later_file_wins_and_the_audit_says_so(tmp_path):
    inbox = tmp_path / "inbox"
    newer = write(inbox / "ips_quarterly" / "a_correctie.csv", f"{HEADER}\nP,Een,2018,1,90,5,6.3,40,20,2,1,3\n")
    older = write(inbox / "ips_quarterly" / "b_eerste.csv", f"{HEADER}\nP,Een,2018,1,80,5,6.3,30,20,2,1,3\n")
    os.utime(older, (1_700_000_000, 1_700_000_000))
    os.utime(newer, (1_700_000_100, 1_700_000_100))
    registry = load_registry()
    con = duckdb.connect(str(tmp_path / "work.duckdb"))
    loads = ingest_contract(con, registry, registry.contracts["ips_quarterly"], inbox, tmp_path / "q")
    assert [f.file_name for f in loads] == ["ips_quarterly/b_eerste.csv", "ips_quarterly/a_correctie.csv"]
    assert rows(con, "select file_name, earlier_file_name, repeated_keys from audit.resubmissions") == [
        {
            "file_name": "ips_quarterly/a_correctie.csv",
            "earlier_file_name": "ips_quarterly/b_eerste.csv",
            "repeated_keys": 1,
        }
    ]
    # the later file has the higher load_id, which int_ips_quarterly_latest lets win without submitted_at
    latest = con.execute("select caseload from raw.ips_quarterly order by _load_id desc limit 1").fetchall()
    assert latest == [(90,)]


# --- a poison night, then a night that publishes ------------------------------------------------


def test_a_poison_night_names_its_cause_and_the_next_night_publishes_after_retract(tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    shutil.copytree(SAMPLE / "ips_quarterly", inbox / "ips_quarterly")
    first = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert first.returncode == 0, first.stdout + first.stderr
    served = warehouse.read_bytes()
    # rows an earlier, laxer version of care-outcomes let in: an FTE of infinity
    con = duckdb.connect(str(warehouse.with_name("co.work.duckdb")))
    con.execute(
        "insert into audit.file_loads select max(load_id) + 1, 'ips_quarterly/oud_formulier.csv', 'ips_quarterly', "
        "'loaded', 1, null, 'legacy', current_localtimestamp() from audit.file_loads"
    )
    con.execute(
        "insert into raw.ips_quarterly select 'OUD', 'Oud', 2018, 1, 80, 5, 'inf'::double, 30, 20, 2, 1, 3, null, "
        "max(load_id), 'ips_quarterly', 'ips_quarterly/oud_formulier.csv', 2, current_localtimestamp(), null, null "
        "from audit.file_loads"
    )
    con.close()
    # and a bad file tonight, which ingest quarantines
    bad = write(inbox / "ips_quarterly" / "zuid.csv", f"{HEADER}\nZUID,Zuid,2018,1,80,5,NaN,30,20,2,1,3\n")

    poisoned = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert poisoned.returncode == 1
    line = last_line(poisoned)
    assert "dbt could not build model" in line and "raw.ips_quarterly.fte from ips_quarterly/oud_formulier.csv" in line
    assert "care-outcomes retract" in line and "Traceback" not in poisoned.stdout + poisoned.stderr
    assert warehouse.read_bytes() == served, "the previous marts stay published"

    listed = cli("files", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert re.search(r"quarantined +0 .* ips_quarterly/zuid\.csv: line 2, column 'fte', value 'NaN'", listed.stdout)
    retracted = cli("retract", "ips_quarterly/oud_formulier.csv", "--warehouse", str(warehouse))
    assert retracted.returncode == 0 and "1 rows taken out of raw" in retracted.stdout
    bad.write_text(f"{HEADER}\nZUID,Zuid,2018,1,80,5,6.3,30,20,2,1,3\n", encoding="utf-8")  # the fixed file

    next_night = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert next_night.returncode == 0, next_night.stdout + next_night.stderr
    assert "files:     1 loaded (1 rows)" in next_night.stdout and "quarantine: no file waits" in next_night.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select count(*) from marts.ips_quarterly where program_id = 'OUD'").fetchall() == [(0,)]
    assert con.execute("select fte from marts.ips_quarterly where program_id = 'ZUID'").fetchall() == [(6.3,)]
    assert rows(con, "select file_name, rows_removed from audit.file_retractions") == [
        {"file_name": "ips_quarterly/oud_formulier.csv", "rows_removed": 1}
    ]
    con.close()
    listed = cli("files", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert re.search(r"retracted +1 .* ips_quarterly/oud_formulier\.csv", listed.stdout)


SOURCE_WRONG = """\
name: ons_formulier
contract: ips_quarterly
folder: ons_formulier
patterns: ["*.csv"]
columns:
  Programma: program_id
  Naam: program_name
  Jaar: year
  Kwartaal: quarter
  Clienten: caseload
  Nieuw: new_clients
  FTE: fte
  Werk: paid_work
  Werk UWV: paid_work_uwv
  Opleiding: education
  Succes: outflow_successful
  Geen succes: outflow_unsuccessful
"""


def test_a_file_quarantined_by_the_users_own_yaml_loads_on_retry_once_the_yaml_is_fixed(tmp_path):
    sources, inbox, warehouse = tmp_path / "sources", tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    write(sources / "ons_formulier.yaml", SOURCE_WRONG)
    write(
        inbox / "ons_formulier" / "q1.csv",
        "Programma,Naam,Jaar,Kwartaal,Cliënten,Nieuw,FTE,Werk,Werk UWV,Opleiding,Succes,Geen succes\n"
        "ONS,Ons,2018,1,80,5,6.3,30,20,2,1,3\n",
    )
    env = {"CARE_OUTCOMES_SOURCES_DIR": str(sources)}
    first = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse), env=env)
    assert first.returncode == 0 and "1 quarantined" in first.stdout
    assert "column 'Cliënten': unknown column" in first.stdout
    assert "quarantine: 1 file(s) wait" in first.stdout
    again = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse), env=env)
    assert "nothing new since the refresh published at" in again.stdout, "the same bytes are not decided twice"
    assert "quarantine: 1 file(s) wait" in again.stdout, "but the summary still says the file waits"

    write(sources / "ons_formulier.yaml", SOURCE_WRONG.replace("  Clienten: caseload", "  Cliënten: caseload"))
    retried = cli("retry", "ons_formulier/q1.csv", "--inbox", str(inbox), "--warehouse", str(warehouse), env=env)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "retry:     1 quarantined file(s) will be decided again: ons_formulier/q1.csv" in retried.stdout
    assert "files:     1 loaded (1 rows), 0 quarantined" in retried.stdout
    assert "quarantine: no file waits" in retried.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select caseload from marts.ips_quarterly").fetchall() == [(80,)]
    assert con.execute("select status from audit.file_loads order by load_id").fetchall() == [
        ("quarantined",),
        ("loaded",),
    ], "the audit keeps both decisions"
    con.close()
    refused = cli("retry", "ons_formulier/q1.csv", "--inbox", str(inbox), "--warehouse", str(warehouse), env=env)
    assert refused.returncode == 2 and "only quarantined files can be retried" in refused.stderr


# --- operational faults: one line, exit 2 -------------------------------------------------------


def test_operational_faults_end_in_one_clear_line(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "ips_quarterly").mkdir(parents=True)
    cases = {
        "the inbox {p} does not exist": ("--inbox", str(tmp_path / "inbxo"), "--warehouse", str(tmp_path / "a.duckdb")),
        "holds none of the source folders": ("--inbox", str(tmp_path), "--warehouse", str(tmp_path / "b.duckdb")),
    }
    (tmp_path / "not_a_folder").write_text("x")
    cases["cannot write in"] = ("--inbox", str(inbox), "--warehouse", str(tmp_path / "not_a_folder" / "co.duckdb"))
    for expected, args in cases.items():
        done = cli("refresh", *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert expected.format(p=tmp_path / "inbxo") in last_line(done), last_line(done)
        assert "Traceback" not in done.stdout + done.stderr and done.stdout == ""


def test_a_damaged_working_database_is_named_and_rebuild_reloads_the_inbox(tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    write(inbox / "ips_quarterly" / "q.csv", f"{HEADER}\nP,Een,2018,1,80,5,6.3,30,20,2,1,3\n")
    write(warehouse.with_name("co.work.duckdb"), "this is not a database, a disk error ate it\n")
    damaged = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert damaged.returncode == 2
    assert "is not a valid DuckDB file" in last_line(damaged) and "--rebuild" in last_line(damaged)
    rebuilt = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse), "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "rebuilt:   the previous working database was moved to" in rebuilt.stdout
    assert "files:     1 loaded (1 rows)" in rebuilt.stdout
    assert [p.name for p in warehouse.parent.glob("co.work.replaced-*.duckdb")], "the damaged file is kept aside"

    # one warehouse, one inbox: another inbox stops with a message, unless --rebuild
    other = tmp_path / "other"
    write(other / "ips_quarterly" / "q.csv", f"{HEADER}\nQ,Twee,2018,1,80,5,6.3,30,20,2,1,3\n")
    mixed = cli("refresh", "--inbox", str(other), "--warehouse", str(warehouse))
    assert mixed.returncode == 2 and f"was built from inbox {inbox}, not {other}" in last_line(mixed)


def test_a_full_disk_ends_in_one_line_naming_the_folder(tmp_path):
    # the file-size limit makes every write past it fail as a full disk does (EFBIG instead of ENOSPC)
    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    warehouse = tmp_path / "wh" / "co.duckdb"
    done = cli("refresh", "--inbox", str(SAMPLE), "--warehouse", str(warehouse), preexec_fn=small_disk)
    assert done.returncode == 2, done.stdout + done.stderr
    # the working database (DuckDB names the errno) or the run's Dagster event log under dagster_home (SQLite does not)
    assert f"cannot write in {warehouse.parent}" in last_line(done)
    assert "(the file is too large for this file system)" in last_line(done) or "a file too large" in last_line(done)
    assert "Traceback" not in done.stdout + done.stderr


# --- no personal data anywhere ------------------------------------------------------------------


def test_no_client_id_of_a_bad_file_reaches_any_table_message_or_log(tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    shutil.copytree(CORPUS / "outflow_zorgdossier", inbox / "outflow_zorgdossier")
    ids = set()
    for path in (inbox / "outflow_zorgdossier").iterdir():
        ids |= set(re.findall(r"C\d{6}", path.read_text(encoding="cp1252", errors="replace")))
    assert len(ids) >= 8, ids
    done = cli("refresh", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert done.returncode == 0, done.stdout + done.stderr
    listed = cli("files", "--inbox", str(inbox), "--warehouse", str(warehouse))
    texts = [done.stdout, done.stderr, listed.stdout, (warehouse.parent / "logs" / "last_refresh.log").read_text()]
    for db in (warehouse, warehouse.with_name("co.work.duckdb")):
        con = duckdb.connect(str(db), read_only=True)
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR' and table_catalog = current_database()"
        ).fetchall()
        for schema, table, column in columns:
            values = con.execute(f'select distinct "{column}" from "{schema}"."{table}"').fetchall()
            texts += [v for (v,) in values if v]
        con.close()
    leaked = {i for i in ids for text in texts if i in text}
    assert leaked == set(), f"raw client ids found: {sorted(leaked)}"


@pytest.mark.parametrize("name", ["files", "retract"])
def test_repairs_before_the_first_refresh_say_what_to_do(tmp_path, name):
    args = ["retract", "x.csv"] if name == "retract" else ["files"]
    done = cli(*args, "--warehouse", str(tmp_path / "co.duckdb"))
    assert "Traceback" not in done.stderr
    if name == "files":
        assert done.returncode == 0 and "no file has been decided yet" in done.stdout
    else:
        assert done.returncode == 2 and "run `care-outcomes refresh` first" in done.stderr


@pytest.mark.parametrize(
    "error, meaning",
    [
        (OSError(30, "Read-only file system"), "the file system is read-only"),
        (OSError(13, "Permission denied"), "permission denied"),
        (OSError(28, "No space left on device"), "the disk is full"),
        (duckdb.IOException('IO Error: Could not write file "x": No space left on device'), "the disk is full"),
    ],
)
def test_storage_errors_become_one_line_naming_the_folder(tmp_path, error, meaning):
    # a read-only folder cannot be made for root (CI): the mapping from the operating system's error is checked here
    from pipelines.warehouse import storage_fault

    fault = storage_fault(error, tmp_path)
    assert str(fault) == (
        f"cannot write in {tmp_path} ({meaning}); free space or fix the permissions of {tmp_path}, then refresh again"
    )
    assert storage_fault(ValueError("not a storage problem"), tmp_path) is None
