"""Row identity in raw (issue 15): a care system that exports everything every night grows raw by its changes only,
and every earlier version of a changed row stays queryable."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading

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

    def run(rows: dict[int, str], name: str = "export.csv", text: str | None = None):
        target = paths.inbox / "outflow" / name
        target.write_text(export(rows) if text is None else text, encoding="utf-8")
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


# --- lines that are stored rows again are not read again ----------------------------------------


@pytest.fixture(autouse=True)
def _skip_in_small_files_too(monkeypatch):
    """The files here are small: let them skip known lines as a nightly export of megabytes does."""
    from pipelines.ingest import load

    monkeypatch.setattr(load, "SKIP_KNOWN_FROM_BYTES", 0)


def test_a_small_file_is_read_whole_with_the_same_outcome(night, skips, monkeypatch):
    from pipelines.ingest import load

    monkeypatch.setattr(load, "SKIP_KNOWN_FROM_BYTES", 1 << 20)
    rows = {n: DESTINATIONS[n % 4] for n in range(1000)}
    night(rows)
    rows[1000] = "opleiding"
    night(rows)
    assert skips == [("outflow/export.csv", 0), ("outflow/export.csv", 0)]
    assert night.con.execute(
        "select rows_stored, rows_unchanged from audit.row_versions order by load_id"
    ).fetchall() == [
        (1000, 0),
        (1, 1000),
    ]
    # the lines read whole keep their hashes: a large export tomorrow skips them
    assert night.con.execute("select count(_line_hash) from raw.outflow").fetchall() == [(1001,)]


@pytest.fixture()
def skips(monkeypatch):
    """(file name, lines skipped) of every file the ingest prepares, in order: which lines it did not type again."""
    from pipelines.ingest import load

    seen = []
    original = load.prepare

    def prepare(*args, **kwargs):
        prepared = original(*args, **kwargs)
        seen.append((prepared.file_name, prepared.skipped))
        return prepared

    monkeypatch.setattr(load, "prepare", prepare)
    return seen


def test_a_nightly_export_types_and_checks_its_changed_lines_only(night, skips):
    rows = {n: DESTINATIONS[n % 4] for n in range(1000)}
    night(rows)
    rows[1000] = "opleiding"  # one new client and one changed destination
    rows[7] = "opleiding" if rows[7] != "opleiding" else "thuissituatie"
    (load,) = night(rows)
    assert load.rows_loaded == 1001
    assert skips == [("outflow/export.csv", 0), ("outflow/export.csv", 999)], "the 999 unchanged lines are skipped"
    assert night.con.execute("select * exclude (load_id) from audit.row_versions order by load_id").fetchall() == [
        (1000, 0),
        (2, 999),
    ]
    # only the latest version of a key carries the hash of its line: the earlier version of client 7 does not
    assert night.con.execute(
        "select _load_id, _line_hash is not null from raw.outflow where _source_row = 9 order by _load_id"
    ).fetchall() == [(1, False), (2, True)]
    assert night.con.execute("select count(_line_hash) from raw.outflow").fetchall() == [(1001,)]


def test_a_key_in_a_skipped_and_in_a_read_line_is_judged_as_in_a_whole_read(night, skips):
    """A line the ingest would skip and a new line with the same key and other values: the file is refused exactly
    as when every line is read (the key twice, on both lines), not stored as a change."""
    night({1: "opleiding", 2: "thuissituatie"})
    text = export({1: "opleiding", 2: "thuissituatie"}) + export({1: "pensioen"}).splitlines()[1] + "\n"
    (load,) = night({}, text=text)
    assert load.status == "quarantined"
    assert "lines 2, 4 have the same key but different values" in load.error, load.error
    assert skips[-2:] == [("outflow/export.csv", 2), ("outflow/export.csv", 0)], "skipped, then read whole"
    assert night.con.execute("select count(*) from raw.outflow").fetchall() == [(2,)]


def test_lines_read_under_another_key_or_other_settings_are_read_again(night, skips):
    rows = {n: DESTINATIONS[n % 4] for n in range(10)}
    night(rows)
    # the source says more (a label for empty cells): tonight's lines are read again, and their rows are the same
    outflow = night.registry.sources["outflow"]
    night.registry.sources["outflow"] = outflow.model_copy(update={"null_values": ("nvt",)})
    rows[10] = "opleiding"
    (load,) = night(rows)
    assert skips[-1] == ("outflow/export.csv", 0)
    assert night.con.execute("select rows_stored, rows_unchanged from audit.row_versions").fetchall()[-1] == (1, 10)
    rows[11] = "opleiding"
    night(rows)
    assert skips[-1] == ("outflow/export.csv", 11), "the rows read again have their lines' hashes under these rules"
    # another pseudonymisation key makes other rows of the same lines: every line is read and stored again
    install_key(night.con, b"x" * 32)
    rows[12] = "opleiding"
    (load,) = night(rows)
    assert skips[-1] == ("outflow/export.csv", 0)
    assert night.con.execute("select rows_stored, rows_unchanged from audit.row_versions").fetchall()[-1] == (13, 0)


def test_a_warehouse_from_before_line_hashes_reads_each_line_once_more(night, skips):
    rows = {n: DESTINATIONS[n % 4] for n in range(10)}
    night(rows)
    night.con.execute("alter table raw.outflow drop column _line_hash")  # as stored before line hashes
    rows[10] = "opleiding"
    night(rows)
    rows[11] = "opleiding"
    night(rows)
    assert [n for _, n in skips] == [0, 0, 11]
    assert night.con.execute("select count(*), count(_line_hash) from raw.outflow").fetchall() == [(12, 12)]


def test_after_a_retraction_the_version_that_is_latest_again_is_read_again(night, skips):
    night({1: "opleiding", 2: "thuissituatie"}, "monday.csv")
    night({1: "pensioen", 2: "thuissituatie"}, "tuesday.csv")  # client 1 changed
    assert retract(night.con, night.registry, "outflow/tuesday.csv") == 1
    # client 1 as on monday again: the stored monday row is the latest version again, and nothing new is stored
    night({1: "opleiding", 2: "thuissituatie", 3: "opleiding"}, "wednesday.csv")
    assert skips[-1] == ("outflow/wednesday.csv", 1), "client 2 only: client 1's monday row had lost its line hash"
    assert night.con.execute(
        "select _file_name, _source_row, destination, _line_hash is not null from raw.outflow order by all"
    ).fetchall() == [
        ("outflow/monday.csv", 2, "opleiding", True),
        ("outflow/monday.csv", 3, "thuissituatie", True),
        ("outflow/wednesday.csv", 4, "opleiding", True),
    ]


def test_a_file_read_ahead_skips_only_lines_that_are_still_the_latest_version(tmp_path, monkeypatch, skips):
    """Tonight's first file changes a programme's quarters and the next, read while the first is stored, brings them
    back as they were stored last night: its lines are read again in their turn and stored as the latest versions,
    exactly as when the files are decided one at a time."""
    from pipelines.ingest import load

    registry = load_registry(())
    contract = registry.contracts["ips_quarterly"]
    back_read = threading.Event()
    prepare, finish = load.prepare, load.finish

    def prepare_back(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        if prepared.file_name.endswith("back.csv"):
            back_read.set()
        return prepared

    def finish_change(con, prepared, *args, **kwargs):  # reading ahead: the next file is read before this is stored
        if prepared.file_name.endswith("change.csv") and load.READ_AHEAD:
            assert back_read.wait(30)
        return finish(con, prepared, *args, **kwargs)

    monkeypatch.setattr(load, "prepare", prepare_back)
    monkeypatch.setattr(load, "finish", finish_change)
    outcomes = []
    for how in ("read ahead", "one at a time"):
        monkeypatch.setattr(load, "READ_AHEAD", 2 if how == "read ahead" else 0)
        paths = resolve_paths(inbox=tmp_path / how / "inbox", warehouse=tmp_path / how / "wh" / "co.duckdb")
        _programme_night(paths.inbox, 12)
        prepare_warehouse(paths)
        with duckdb.connect(str(paths.work_db)) as con:
            ingest_contract(con, registry, contract, paths.inbox, paths.quarantine_dir)
            folder = paths.inbox / "ips_quarterly"
            last_night = (folder / "p001.csv").read_text(encoding="utf-8")
            (folder / "p001-change.csv").write_text(last_night.replace(",4.0,10,", ",4.5,10,"), encoding="utf-8")
            (folder / "p001-back.csv").write_text(last_night + "P001,Programma 1,2020,1,50,5,4.0,10,5,1,1,1\n")
            for i, name in enumerate(("p001-change.csv", "p001-back.csv")):
                os.utime(folder / name, (1_800_000_000 + i, 1_800_000_000 + i))
            skips.clear()
            loads = ingest_contract(con, registry, contract, paths.inbox, paths.quarantine_dir)
            stored = con.execute(
                "select * exclude (_loaded_at) from raw.ips_quarterly order by _load_id, _source_row"
            ).fetchall()
            versions = con.execute("select * from audit.row_versions order by load_id").fetchall()
        outcomes.append((loads, stored, versions))
        if how == "read ahead":
            assert ("ips_quarterly/p001-back.csv", 8) in skips and skips[-1] == ("ips_quarterly/p001-back.csv", 0)
    assert outcomes[0] == outcomes[1]
    loads, stored, versions = outcomes[0]
    assert [(load.file_name, load.status) for load in loads] == [
        ("ips_quarterly/p001-change.csv", "loaded"),
        ("ips_quarterly/p001-back.csv", "loaded"),
    ]
    assert [v[1:] for v in versions[-2:]] == [(8, 0), (9, 0)], "the quarters changed, then back again (and one new)"


def test_a_line_twice_where_a_key_may_never_repeat_is_refused_though_it_was_stored_before(tmp_path):
    """Fidelity scores may never repeat a key: a line stored last night and held twice tonight is read, not
    skipped, and the file is refused as when every line is read."""
    paths = resolve_paths(inbox=tmp_path / "inbox", warehouse=tmp_path / "wh" / "co.duckdb")
    folder = paths.inbox / "ips_fidelity"
    folder.mkdir(parents=True)
    prepare_warehouse(paths)
    registry = load_registry(())
    lines = [
        "program_id,assessment_date,item_code,score_ips_a,score_ips_o",
        "P1,2024-03-01,BZ1a,4,3",
        "P1,2024-03-01,BZ2,5,5",
    ]
    with duckdb.connect(str(paths.work_db)) as con:
        for night, text in enumerate(("\n".join(lines), "\n".join([*lines, lines[1]]))):
            (folder / "p1.csv").write_text(text + "\n", encoding="utf-8")
            os.utime(folder / "p1.csv", (1_800_000_000 + night, 1_800_000_000 + night))
            (load,) = ingest_contract(
                con, registry, registry.contracts["ips_fidelity"], paths.inbox, paths.quarantine_dir
            )
        assert load.status == "quarantined" and "lines 2, 4 repeat the same key" in load.error, load.error


# --- the deregistrations the marts read: only changed keys are ranked again ---------------------


def test_nightly_builds_rank_only_the_keys_that_changed_and_agree_with_ranking_every_version(tmp_path):
    """int_outflow_latest_versions is incremental: a night ranks again the keys that got a new version, and the keys
    that lost theirs to a retraction (a key with no version left goes). After every night it equals the latest
    version of each key ranked over all of raw, here computed independently."""
    from tests.conftest import ROOT, clean_env, run_refresh

    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    (inbox / "outflow").mkdir(parents=True)
    env = {"CARE_OUTCOMES_PSEUDONYM_KEY": "nachtelijke-export"}
    work = warehouse.with_name("co.work.duckdb")
    latest_by_hand = (
        "select client_id, provider, end_date, destination, _load_id, _source_row from raw.outflow "
        "qualify row_number() over (partition by provider, client_id, end_date order by _load_id desc, "
        "_source_row desc) = 1 order by all"
    )
    built = (
        "select client_pseudonym, provider, end_date, destination, load_id, source_row "
        "from intermediate.int_outflow_latest_versions order by all"
    )

    def refresh(name: str | None = None, rows: dict[int, str] | None = None, at: int = 0) -> None:
        if name:
            (inbox / "outflow" / name).write_text(export(rows), encoding="utf-8")
            os.utime(inbox / "outflow" / name, (1_800_000_000 + at, 1_800_000_000 + at))
        done = run_refresh(inbox, warehouse, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        with duckdb.connect(str(work), read_only=True) as con:
            assert con.execute(built).fetchall() == con.execute(latest_by_hand).fetchall()

    refresh("monday.csv", {1: "opleiding", 2: "thuissituatie", 3: "andere_dagbesteding"})
    # a mark on an unchanged key: a night that ranked it again would overwrite it
    with duckdb.connect(str(work)) as con:
        con.execute("update intermediate.int_outflow_latest_versions set location = 'gemarkeerd' where source_row = 3")
    refresh(
        "tuesday.csv", {1: "betaald_werk_regulier", 2: "thuissituatie", 3: "andere_dagbesteding", 4: "opleiding"}, 1
    )
    with duckdb.connect(str(work)) as con:
        marked = con.execute(
            "select source_row, location from intermediate.int_outflow_latest_versions where location = 'gemarkeerd'"
        ).fetchall()
        assert marked == [(3, "gemarkeerd")], "client 2 (line 3) was not ranked again"
        con.execute("update intermediate.int_outflow_latest_versions set location = 'Ede' where source_row = 3")
        assert con.execute(
            "select destination from marts.outflow_by_destination where outflow_count > 0 order by all"
        ).fetchall() == [("andere_dagbesteding",), ("betaald_werk_regulier",), ("opleiding",), ("thuissituatie",)]
    # tuesday retracted: client 1 is monday's again, client 4 had no other version and is gone
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "retract", "outflow/tuesday.csv", "--warehouse", str(warehouse)],
        capture_output=True, text=True, env=clean_env(**env), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    refresh()
    with duckdb.connect(str(work), read_only=True) as con:
        assert con.execute(
            "select destination, outflow_count from marts.outflow_by_destination where outflow_count > 0 order by all"
        ).fetchall() == [("andere_dagbesteding", 1), ("opleiding", 1), ("thuissituatie", 1)]
