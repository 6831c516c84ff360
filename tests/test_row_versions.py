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
