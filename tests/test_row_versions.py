"""Row identity in raw (issue 15): a care system that exports everything every night grows raw by its changes only,
and every earlier version of a changed row stays queryable."""

from __future__ import annotations

import datetime as dt
import os

import duckdb
import pytest

from pipelines.ingest.load import RepairRefused, ingest_contract, retract
from pipelines.ingest.pseudonymise import hmac_sql, install_key
from pipelines.ingest.registry import load_registry
from pipelines.warehouse import prepare_warehouse, resolve_paths

HEADER = "client_id,provider,location,start_date,end_date,destination,ladder_step_start,ladder_step_end"
DESTINATIONS = ["betaald_werk_regulier", "opleiding", "thuissituatie", "andere_dagbesteding"]


def export(rows: dict[int, str]) -> str:
    """A full export: one deregistration per client, its destination as given."""
    lines = [HEADER] + [
        f"C{n:06d},Stichting Nacht,Ede,2020-01-{1 + n % 28:02d},2023-03-{1 + n % 28:02d},{destination},2,3"
        for n, destination in sorted(rows.items())
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def night(tmp_path):
    """Write tonight's full export over yesterday's (same name, as care systems do) and ingest it."""
    paths = resolve_paths(inbox=tmp_path / "inbox", warehouse=tmp_path / "wh" / "co.duckdb")
    (paths.inbox / "outflow").mkdir(parents=True)
    prepare_warehouse(paths)
    registry = load_registry(())
    contract = registry.contracts["outflow"]
    con = duckdb.connect(str(paths.work_db))
    install_key(con, b"k" * 32)
    clock = [dt.datetime(2026, 1, 1).timestamp()]

    def run(rows: dict[int, str], name: str = "export.csv"):
        target = paths.inbox / "outflow" / name
        target.write_text(export(rows), encoding="utf-8")
        clock[0] += 86400  # the next night: a new modification time
        os.utime(target, (clock[0], clock[0]))
        return ingest_contract(con, registry, contract, paths.inbox, paths.quarantine_dir, pseudonymise=hmac_sql)

    run.con, run.registry = con, registry
    yield run
    con.close()


def test_thirty_nights_of_full_exports_store_the_changes_only(night):
    rows = {n: DESTINATIONS[n % 4] for n in range(1000)}
    stored = []
    for n in range(30):
        if n:  # 0.1% new and 0.1% changed: one new client, one changed destination
            rows[1000 + n] = "opleiding"
            rows[n * 7] = DESTINATIONS[(DESTINATIONS.index(rows[n * 7]) + 1) % 4]
        (load,) = night(rows)
        assert load.status == "loaded" and load.rows_loaded == len(rows), load
        stored.append(night.con.execute("select count(*) from raw.outflow").fetchall()[0][0])
    assert stored == [1000 + 2 * n for n in range(30)], "raw grows by the new and changed rows only"
    versions = night.con.execute(
        "select rows_stored, rows_unchanged from audit.row_versions order by load_id"
    ).fetchall()
    assert versions[0] == (1000, 0) and versions[1:] == [(2, 1000 + n - 2) for n in range(1, 30)]
    # every version of a changed row stays: client 7 changed on night 2 (and 49 on night 8)
    history = night.con.execute(
        "select destination from raw.outflow r join audit.file_loads f on f.load_id = r._load_id "
        "where _source_row = 9 order by _load_id"
    ).fetchall()
    assert [d for (d,) in history] == [DESTINATIONS[7 % 4], DESTINATIONS[(7 % 4 + 1) % 4]]
    # what the marts read (the latest version of each key) is exactly tonight's export
    latest = dict(
        night.con.execute(
            "select _source_row - 2, destination from raw.outflow "
            "qualify row_number() over (partition by provider, client_id, end_date order by _load_id desc) = 1"
        ).fetchall()
    )
    assert latest == {i: rows[n] for i, n in enumerate(sorted(rows))}


def test_a_row_changed_back_is_stored_again_as_the_latest_version(night):
    night({1: "opleiding", 2: "thuissituatie"})
    night({1: "betaald_werk_regulier", 2: "thuissituatie"})
    night({1: "opleiding", 2: "thuissituatie"})  # back to the first content: it is the latest again
    assert night.con.execute(
        "select destination from raw.outflow where _source_row = 2 order by _load_id"
    ).fetchall() == [("opleiding",), ("betaald_werk_regulier",), ("opleiding",)]


def test_a_file_whose_rows_later_files_repeat_is_not_retracted(night):
    night({1: "opleiding"}, "monday.csv")
    night({1: "opleiding", 2: "thuissituatie"}, "tuesday.csv")  # client 1 unchanged: stored once, by monday's file
    with pytest.raises(RepairRefused, match=r"later files repeat rows of it unchanged \(outflow/tuesday.csv\)"):
        retract(night.con, night.registry, "outflow/monday.csv")
    # the latest file has nothing after it: it can go, with the one row it added
    assert retract(night.con, night.registry, "outflow/tuesday.csv") == 1
    assert night.con.execute("select count(*) from raw.outflow").fetchall() == [(1,)]


def _programme_night(inbox, n_files: int) -> None:
    """Files of every fate in one night, in a known order (modification times): programmes' files, a resubmission
    that changes a key another file brought earlier the same night, one file's bytes again under another name, a
    file with a bad cell and one with a key twice."""
    folder = inbox / "ips_quarterly"
    folder.mkdir(parents=True)
    header = "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
    header += "outflow_successful,outflow_unsuccessful"
    files = {}
    for p in range(n_files):
        lines = [f"P{p:03d},Programma {p},{2018 + q // 4},{q % 4 + 1},{40 + p + q},5,4.0,10,5,1,1,1" for q in range(8)]
        files[f"p{p:03d}.csv"] = "\n".join([header, *lines]) + "\n"
    files["p005-correction.csv"] = files["p005.csv"].replace(",5,4.0,10,", ",6,4.0,12,")  # a later version
    files["p007-copy.csv"] = files["p007.csv"]  # the same bytes again: a duplicate
    files["p009.csv"] = files["p009.csv"].replace(",4.0,10,", ",vier,10,", 1)  # a bad cell: quarantined
    lines = files["p011.csv"].splitlines()
    files["p011.csv"] = "\n".join([*lines, lines[-1].replace(",5,4.0,", ",7,4.0,")]) + "\n"  # a key twice, unlike
    for i, (name, text) in enumerate(files.items()):
        (folder / name).write_text(text, encoding="utf-8")
        os.utime(folder / name, (1_700_000_000 + i, 1_700_000_000 + i))


@pytest.mark.parametrize("read_alone_above", [None, 490])
def test_files_read_ahead_are_decided_as_one_at_a_time(tmp_path, monkeypatch, read_alone_above):
    """The ingest reads and checks the next files on other connections while it stores one (READ_AHEAD): every
    file's fate, the stored rows and their versions are exactly those of deciding the files one at a time on one
    connection; a file above the size for reading ahead is read in its turn."""
    from pipelines.ingest import load

    if read_alone_above is not None:  # some files read ahead, some in their turn
        monkeypatch.setattr(load, "PREPARE_AHEAD_BYTES", read_alone_above)
    registry = load_registry(())
    contract = registry.contracts["ips_quarterly"]
    outcomes = []
    for how in ("read ahead", "one at a time"):
        paths = resolve_paths(inbox=tmp_path / how / "inbox", warehouse=tmp_path / how / "wh" / "co.duckdb")
        _programme_night(paths.inbox, 30)
        prepare_warehouse(paths)
        with duckdb.connect(str(paths.work_db)) as con:
            if how == "read ahead":
                loads = ingest_contract(con, registry, contract, paths.inbox, paths.quarantine_dir)
            else:
                monkeypatch.setattr(load, "READ_AHEAD", 0)
                loads = ingest_contract(con, registry, contract, paths.inbox, paths.quarantine_dir)
            stored = con.execute(
                "select * exclude (_loaded_at) from raw.ips_quarterly order by _load_id, _source_row"
            ).fetchall()
            audit = con.execute(
                "select load_id, file_name, status, rows_loaded, error from audit.file_loads order by load_id"
            ).fetchall()
            versions = con.execute("select * from audit.row_versions order by load_id").fetchall()
            resubmissions = con.execute("select * from audit.resubmissions order by all").fetchall()
        outcomes.append((loads, stored, audit, versions, resubmissions))
    assert outcomes[0] == outcomes[1]
    loads, stored, audit, versions, resubmissions = outcomes[0]
    fates = {load.file_name.split("/")[-1]: load.status for load in loads}
    assert fates["p009.csv"] == fates["p011.csv"] == "quarantined" and fates["p007-copy.csv"] == "duplicate"
    assert sum(status == "loaded" for status in fates.values()) == 29
    assert versions[-1][1:] == (8, 0) and resubmissions  # the correction: 8 changed rows, a resubmission of p005
