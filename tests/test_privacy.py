"""Issue 26, privacy operations with real files and real refreshes: erasure that holds (through later files,
resubmissions, retries and rebuilds, checked against an independent build without the client), a warehouse bound to
its pseudonymisation key, moving to a new key on purpose, and retention of person-level rows."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import duckdb
import pytest

from pipelines.privacy import cutoff, key_fingerprint
from tests.conftest import MARTS, ROOT, SAMPLE, clean_env, run_refresh

KEY = {"CARE_OUTCOMES_PSEUDONYM_KEY": "privacy-key"}
CLIENT = "C275919"  # in ICT Maatwerk's 2022 export
ZD = "outflow_zorgdossier"


def outflow_inbox(tmp_path: Path, name: str = "inbox", without=None) -> Path:
    """The sample's outflow CSV exports (generic and the Dutch care system); ``without(line)``: lines left out."""
    inbox = tmp_path / name
    for folder in ("outflow", ZD):
        (inbox / folder).mkdir(parents=True)
        for source in sorted((SAMPLE / folder).glob("*.csv")):
            encoding = "cp1252" if folder == ZD else "utf-8"
            lines = source.read_bytes().decode(encoding).splitlines(keepends=True)
            kept = [lines[0]] + [line for line in lines[1:] if without is None or not without(folder, line)]
            (inbox / folder / source.name).write_bytes("".join(kept).encode(encoding))
    return inbox


def cli(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [".venv/bin/python", "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=clean_env(**{"CARE_OUTCOMES_CHROMIUM": "off", **KEY, **(env or {})}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def marts(warehouse: Path) -> dict[str, list]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            mart: sorted(con.execute(f"select * from marts.{mart}").fetchall(), key=repr)
            for mart in MARTS
            if con.execute(f"select count(*) from information_schema.tables where table_name = '{mart}'").fetchall()[0][
                0
            ]
        }


def raw_count(warehouse: Path, where: str = "true") -> int:
    with duckdb.connect(str(warehouse.with_name(warehouse.stem + ".work.duckdb")), read_only=True) as con:
        return con.execute(f"select count(*) from raw.outflow where {where}").fetchall()[0][0]


def holds(folder: Path, text: str, skip: tuple[str, ...] = ("quarantine",)) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and not any(part in skip for part in path.parts):
            data = path.read_bytes()
            if any(text.encode(enc) in data for enc in ("utf-8", "utf-16-le")):
                found.append(path)
    return found


def test_an_erased_client_is_gone_from_raw_and_marts_and_stays_erased(tmp_path):
    inbox, warehouse = outflow_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    assert run_refresh(inbox, warehouse, env=KEY).returncode == 0
    before = raw_count(warehouse)

    reader = duckdb.connect(str(warehouse), read_only=True)  # a BI tool reading all the while
    outflow = "select sum(total_outflow) from marts.outflow_summary"
    seen = reader.execute(outflow).fetchall()
    erased = cli("erase", "--client-id", "-", "--inbox", str(inbox), "--warehouse", str(warehouse), stdin=CLIENT + "\n")
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert reader.execute(outflow).fetchall() == seen, "the reader keeps the version it opened"
    reader.close()
    with duckdb.connect(str(warehouse), read_only=True) as fresh:
        assert fresh.execute(outflow).fetchall()[0][0] == seen[0][0] - 1
    assert "erase:     1 rows removed from the working database" in erased.stdout
    assert f"  {ZD}: 1 rows" in erased.stdout
    assert f"still holds the id: {inbox / ZD / 'ict_maatwerk_uitschrijvingen_2022.csv'}" in erased.stdout
    assert "published: " in erased.stdout, "the marts without the client are published at once"
    assert raw_count(warehouse) == before - 1

    # the same marts as a warehouse that never saw the client (an independent build from files without them)
    clean = outflow_inbox(tmp_path, "clean", without=lambda folder, line: line.startswith(CLIENT + ";"))
    other = tmp_path / "other" / "co.duckdb"
    assert run_refresh(clean, other, env=KEY).returncode == 0
    assert marts(warehouse) == marts(other)

    # a later file and a resubmission of the export hold the client again: dropped and counted, never loaded
    export = inbox / ZD / "ict_maatwerk_uitschrijvingen_2022.csv"
    text = export.read_bytes().decode("cp1252")
    line = next(x for x in text.splitlines() if x.startswith(CLIENT))
    header = text.splitlines()[0]
    (inbox / ZD / "nalevering_2023.csv").write_bytes(
        f"{header}\r\n{line.replace('Nijmegen', 'Arnhem')}\r\n".encode("cp1252")
    )
    night = run_refresh(inbox, warehouse, env=KEY)
    assert night.returncode == 0, night.stdout + night.stderr
    assert "erased:    1 rows dropped (of clients erased on request)" in night.stdout
    export.write_bytes(text.replace(line, line.replace("Nijmegen", "Ede")).encode("cp1252"))  # the export, corrected
    resubmitted = run_refresh(inbox, warehouse, env=KEY)
    assert resubmitted.returncode == 0 and "erased:    1 rows dropped" in resubmitted.stdout, resubmitted.stdout
    assert raw_count(warehouse) == before - 1

    # a retried file: quarantined (a label its source does not know), retried after the source YAML was fixed
    sources = tmp_path / "sources"
    sources.mkdir()
    yaml_text = (ROOT / "pipelines" / "ingest" / "sources" / f"{ZD}.yaml").read_text(encoding="utf-8")
    extra = sources / "extra.yaml"
    extra.write_text(yaml_text.replace(f"name: {ZD}", "name: extra").replace(f"folder: {ZD}", "folder: extra"))
    (inbox / "extra").mkdir()
    label = line.split(";")[5]
    (inbox / "extra" / "retry.csv").write_bytes(
        f"{header}\r\n{line.replace(label, 'Naar de maan')}\r\n"
        "C100001;ICT Maatwerk;Arnhem;01-02-2021;04-01-2022;Naar de maan;3;5;12,5\r\n".encode("cp1252")
    )
    with_extra = {**KEY, "CARE_OUTCOMES_SOURCES_DIR": str(sources)}
    first = run_refresh(inbox, warehouse, env=with_extra)
    assert "1 quarantined" in first.stdout, first.stdout + first.stderr
    extra.write_text(
        extra.read_text().replace("    Opleiding: opleiding", "    Opleiding: opleiding\n    Naar de maan: opleiding")
    )
    fixed = cli(
        "retry", "--inbox", str(inbox), "--warehouse", str(warehouse), env={"CARE_OUTCOMES_SOURCES_DIR": str(sources)}
    )
    assert fixed.returncode == 0 and "erased:    1 rows dropped" in fixed.stdout, fixed.stdout + fixed.stderr
    assert raw_count(warehouse) == before  # the other client of the retried file came in, the erased one did not

    # a rebuild loads every file anew: the erasure list goes with the warehouse
    rebuilt = run_refresh(inbox, warehouse, env=with_extra, args=("--rebuild",))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "erased:    3 rows dropped" in rebuilt.stdout, rebuilt.stdout
    assert raw_count(warehouse) == before

    # the id is in no table, log, Parquet file, report or Dagster storage of the warehouse, and in no output
    assert holds(warehouse.parent, CLIENT) == []
    for done in (erased, night, resubmitted, first, fixed, rebuilt):
        assert CLIENT not in done.stdout + done.stderr
    with duckdb.connect(str(warehouse.with_name("co.work.duckdb")), read_only=True) as con:
        recorded = con.execute("select source, rows_removed from audit.erasures order by source").fetchall()
        columns = {r[0] for r in con.execute("select column_name from (describe audit.erasures)").fetchall()}
    assert (ZD, 1) in recorded and columns == {"erased_at", "source", "rows_removed"}


def test_an_unknown_id_erases_nothing_and_a_running_refresh_is_not_disturbed(tmp_path):
    inbox, warehouse = outflow_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    assert run_refresh(inbox, warehouse, env=KEY).returncode == 0
    done = cli("erase", "--client-id", "NOBODY-1", "--inbox", str(inbox), "--warehouse", str(warehouse))
    assert done.returncode == 0 and "erase:     0 rows removed" in done.stdout
    assert "NOBODY-1" not in done.stdout + done.stderr
    lock = subprocess.Popen(
        [".venv/bin/python", "-c", "import sys; from pipelines.warehouse import resolve_paths, writer_lock\n"
         "with writer_lock(resolve_paths(sys.argv[1], sys.argv[2])):\n    print('held', flush=True); sys.stdin.read()",
         str(inbox), str(warehouse)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert lock.stdout.readline().strip() == "held"
    try:
        busy = cli("erase", "--client-id", CLIENT, "--inbox", str(inbox), "--warehouse", str(warehouse))
    finally:
        lock.stdin.close()
        lock.wait()
    assert busy.returncode == 2 and busy.stderr.startswith("erase failed: another refresh is writing")
    assert CLIENT not in busy.stdout + busy.stderr


def test_another_key_is_refused_before_anything_is_loaded(tmp_path):
    inbox, warehouse = outflow_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    assert run_refresh(inbox, warehouse, env=KEY).returncode == 0
    served = warehouse.read_bytes()
    (inbox / "outflow" / "new.csv").write_text(
        "client_id,provider,location,start_date,end_date,destination,ladder_step_start,ladder_step_end\n"
        "C1,Zorg BV,Ede,2021-01-01,2023-01-01,opleiding,3,4\n",
        encoding="utf-8",
    )
    wrong = run_refresh(inbox, warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": "another-key"})
    assert wrong.returncode == 2
    line = (wrong.stdout + wrong.stderr).strip().splitlines()[-1]
    assert "CARE_OUTCOMES_PSEUDONYM_KEY differs from the key this warehouse" in line and "--rebuild" in line
    assert "another-key" not in wrong.stdout + wrong.stderr
    assert warehouse.read_bytes() == served, "nothing is published"
    with duckdb.connect(str(warehouse.with_name("co.work.duckdb")), read_only=True) as con:
        assert con.execute("select count(*) from audit.file_loads where file_name = 'outflow/new.csv'").fetchall() == [
            (0,)
        ]
        stored = con.execute("select key_fingerprint from audit.warehouse").fetchall()[0][0]
    assert stored == key_fingerprint(b"privacy-key") and "privacy-key" not in stored


def test_moving_to_a_new_key_on_purpose_keeps_every_figure(tmp_path):
    inbox, warehouse = outflow_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    assert run_refresh(inbox, warehouse, env=KEY).returncode == 0
    figures = marts(warehouse)
    new = {"CARE_OUTCOMES_PSEUDONYM_KEY": "the-new-key"}
    moved = run_refresh(inbox, warehouse, env=new, args=("--rebuild",))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert marts(warehouse) == figures
    assert run_refresh(inbox, warehouse, env=new, args=("--force",)).returncode == 0
    assert run_refresh(inbox, warehouse, env=KEY).returncode == 2, "the old key is now the wrong one"
    # with clients erased, a rebuild under another key would let them back: refused
    assert (
        cli("erase", "--client-id", CLIENT, "--inbox", str(inbox), "--warehouse", str(warehouse), env=new).returncode
        == 0
    )
    refused = run_refresh(inbox, warehouse, env=KEY, args=("--rebuild",))
    assert refused.returncode == 2 and "holds clients erased on request" in refused.stdout + refused.stderr


def test_retention_removes_exactly_the_rows_that_ended_too_long_ago(tmp_path):
    years = dt.date.today().year - 2022  # the sample's 2022 deregistrations ended more than that many years ago
    limit = cutoff(years)

    def ended_before(folder: str, line: str) -> bool:
        cells = line.split(";" if folder == ZD else ",")
        text = cells[4]
        end = dt.datetime.strptime(text, "%d-%m-%Y").date() if folder == ZD else dt.date.fromisoformat(text)
        return end < limit

    inbox, warehouse = outflow_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    kept_inbox = outflow_inbox(tmp_path, "kept", without=ended_before)
    expected_removed = sum(
        1
        for folder in ("outflow", ZD)
        for path in (inbox / folder).glob("*.csv")
        for line in path.read_bytes().decode("cp1252" if folder == ZD else "utf-8").splitlines()[1:]
        if ended_before(folder, line)
    )
    assert expected_removed > 0
    assert run_refresh(inbox, warehouse, env=KEY).returncode == 0
    total = raw_count(warehouse)
    setting = {**KEY, "CARE_OUTCOMES_RETENTION_YEARS": str(years)}
    done = run_refresh(inbox, warehouse, env=setting, args=("--force",))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"retention: {expected_removed} rows that ended before {limit:%Y-%m-%d} removed" in done.stdout
    assert raw_count(warehouse) == total - expected_removed
    assert raw_count(warehouse, f"end_date < '{limit}'") == 0
    other = tmp_path / "other" / "co.duckdb"
    assert run_refresh(kept_inbox, other, env=KEY).returncode == 0
    assert marts(warehouse) == marts(other), "the marts follow what is kept"
    with duckdb.connect(str(warehouse.with_name("co.work.duckdb")), read_only=True) as con:
        assert con.execute("select sum(rows_removed) from audit.retention").fetchall() == [(expected_removed,)]
    again = run_refresh(inbox, warehouse, env=setting, args=("--force",))
    assert "retention:" not in again.stdout, "nothing left to remove"
    bad = run_refresh(inbox, warehouse, env={**KEY, "CARE_OUTCOMES_RETENTION_YEARS": "zeven"})
    assert bad.returncode == 2 and "CARE_OUTCOMES_RETENTION_YEARS='zeven'" in bad.stderr


@pytest.mark.parametrize("today", [dt.date(2024, 2, 29), dt.date(2026, 12, 4)])
def test_the_retention_cutoff_is_the_same_day_years_back(today):
    assert cutoff(7, today) == today.replace(year=today.year - 7, day=min(today.day, 28 if today.month == 2 else 31))
