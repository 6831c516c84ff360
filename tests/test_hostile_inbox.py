"""Issue 25, the inbox as a hostile user fills it: links, FIFOs and sockets, personal data in free text, text without
bounds, invisible characters, records that span lines, file names no terminal should print, and workbooks that
explode. Each class is tried with real files in a real inbox; the night goes on, nothing leaks, nothing is lost."""

from __future__ import annotations

import os
import re
import socket
import stat
import zipfile
from pathlib import Path

import duckdb
import openpyxl
import pytest

from pipelines.ingest.load import inbox_entries, ingest_contract, quarantine_name
from pipelines.ingest.pseudonymise import hmac_sql, install_key
from pipelines.ingest.registry import RegistryError, _load_contract, load_registry
from pipelines.ingest.screen import looks_personal, normalised
from pipelines.warehouse import shown
from tests.conftest import SAMPLE, run_refresh

HEADER = (
    "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
    "outflow_successful,outflow_unsuccessful"
)
ROW = "2018,1,80,5,6.3,30,20,2,1,3"
OUTFLOW_HEADER = "client_id,provider,location,start_date,end_date,destination,ladder_step_start,ladder_step_end"
SECRET = "CARE_OUTCOMES_PSEUDONYM_KEY=do-not-leak-4f1c9e"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class Night:
    """One contract's ingest over an inbox, as the refresh runs it (key installed, client ids pseudonymised)."""

    def __init__(self, tmp_path: Path, contract: str = "ips_quarterly"):
        self.tmp = tmp_path
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.quarantine = tmp_path / "warehouse" / "quarantine"
        self.registry = load_registry()
        self.contract = self.registry.contracts[contract]
        self.con = duckdb.connect(str(tmp_path / "work.duckdb"))
        install_key(self.con, b"hostile-key")

    def run(self) -> dict[str, object]:
        loads = ingest_contract(
            self.con, self.registry, self.contract, self.inbox, self.quarantine, pseudonymise=hmac_sql
        )
        return {load.file_name: load for load in loads}

    def raw(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def audit_text(self) -> str:
        return " ".join(str(r) for r in self.raw("select * from audit.file_loads"))

    def quarantined_bytes(self) -> bytes:
        if not self.quarantine.exists():
            return b""
        return b"".join(p.read_bytes() for p in self.quarantine.iterdir())


# --- 1. only regular files inside the inbox are opened -----------------------------------------


def test_links_fifos_and_sockets_are_skipped_never_opened_and_the_night_goes_on(tmp_path):
    night = Night(tmp_path)
    folder = night.inbox / "ips_quarterly"
    write(folder / "a_good.csv", f"{HEADER}\nGOOD,Goed,{ROW}\n")
    outside = write(tmp_path / "elsewhere" / "secret.csv", f"{HEADER}\nLEAK,{SECRET},{ROW}\n")
    (folder / "b_link.csv").symlink_to(outside)
    (folder / "c_environ.csv").symlink_to("/proc/self/environ")
    (folder / "d_dangling.csv").symlink_to(tmp_path / "gone.csv")
    (folder / "e_folder").symlink_to(outside.parent, target_is_directory=True)
    os.mkfifo(folder / "f_pipe.csv")  # opened for reading, a FIFO without a writer would hang the night
    sock = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    os.chdir(folder)  # a socket's path is at most 107 bytes: bound by its name in its folder
    try:
        sock.bind("g_socket.csv")
    finally:
        os.chdir(here)
    try:
        loads = night.run()
    finally:
        sock.close()

    assert loads["ips_quarterly/a_good.csv"].status == "loaded"
    kinds = {
        "b_link.csv": "a symbolic link",
        "c_environ.csv": "a symbolic link",
        "d_dangling.csv": "a symbolic link",
        "e_folder": "a symbolic link",
        "f_pipe.csv": "a FIFO",
        "g_socket.csv": "a socket",
    }
    for name, kind in kinds.items():
        load = loads[f"ips_quarterly/{name}"]
        assert load.status == "skipped", load
        assert load.error.startswith(f"ips_quarterly/{name}: skipped: it is {kind}"), load.error
        assert load.rows_loaded == 0
    assert night.raw("select distinct program_id from raw.ips_quarterly") == [("GOOD",)]
    assert b"do-not-leak" not in night.quarantined_bytes(), "nothing behind a link is copied"
    assert not night.quarantine.exists() or not list(night.quarantine.iterdir())
    assert "do-not-leak" not in night.audit_text()
    assert night.run() == {}, "an entry is recorded once, not every night"


def test_a_link_that_appears_under_a_name_already_read_is_not_followed(tmp_path):
    night = Night(tmp_path)
    path = write(night.inbox / "ips_quarterly" / "q1.csv", f"{HEADER}\nP,Een,{ROW}\n")
    assert night.run()["ips_quarterly/q1.csv"].status == "loaded"
    outside = write(tmp_path / "outside.csv", f"{HEADER}\nLEAK,{SECRET},{ROW}\n")
    path.unlink()
    path.symlink_to(outside)
    assert night.run()["ips_quarterly/q1.csv"].status == "skipped"
    assert night.raw("select count(*) from raw.ips_quarterly where program_id = 'LEAK'") == [(0,)]


def test_the_refresh_names_skipped_entries_and_publishes(tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    write(inbox / "ips_quarterly" / "a.csv", f"{HEADER}\nP,Een,{ROW}\n")
    os.mkfifo(inbox / "ips_quarterly" / "pipe.csv")
    (inbox / "ips_quarterly" / "env.csv").symlink_to("/proc/self/environ")
    done = run_refresh(inbox, warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": "k", "SECRET_TOKEN": SECRET}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files:     1 loaded (1 rows), 0 quarantined, 0 duplicate, 2 skipped" in done.stdout
    assert "  skipped: ips_quarterly/pipe.csv: skipped: it is a FIFO (named pipe), not a regular file" in done.stdout
    assert "do-not-leak" not in done.stdout + done.stderr
    for path in warehouse.parent.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"do-not-leak" not in path.read_bytes(), path


# --- 2. personal data in free text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Team Zuid (j.jansen@ggz-zuid.nl)", "an e-mail address"),
        ("Trajectbegeleider 111222333", "a citizen service number (BSN)"),
        ("Bel 06-12345678", "a phone number"),
        ("Rekening NL91 ABNA 0417 1643 00", "an IBAN"),
    ],
)
def test_personal_data_in_a_free_text_column_quarantines_the_file_without_echoing_it(tmp_path, name, kind):
    night = Night(tmp_path)
    write(night.inbox / "ips_quarterly" / "zuid.csv", f"{HEADER}\nZUID,Zuid,{ROW}\nZUID2,{name},{ROW}\n")
    load = night.run()["ips_quarterly/zuid.csv"]
    assert load.status == "quarantined"
    assert f"line 3, column 'program_name': holds what looks like {kind}" in load.error, load.error
    for piece in re.findall(r"[\w.@-]{4,}", name):
        assert piece not in night.audit_text(), piece
    assert night.raw("select count(*) from raw.ips_quarterly") == [(0,)]


def test_an_email_address_as_an_unknown_destination_label_is_not_quoted(tmp_path):
    night = Night(tmp_path, "outflow")
    write(
        night.inbox / "outflow" / "export.csv",
        f"{OUTFLOW_HEADER}\nC1,Zorg BV,Arnhem,2022-01-01,2023-01-01,mail naar piet@voorbeeld.nl,3,4\n",
    )
    load = night.run()["outflow/export.csv"]
    assert load.status == "quarantined"
    assert "line 2, column 'destination': holds what looks like an e-mail address" in load.error
    assert "piet" not in night.audit_text() and "voorbeeld" not in night.audit_text()


def test_an_export_without_its_header_line_never_quotes_a_client_id(tmp_path):
    night = Night(tmp_path, "outflow")
    write(
        night.inbox / "outflow" / "export.csv",
        "C9876543,Zorg BV,Arnhem,2022-01-01,2023-01-01,opleiding,3,4\n"
        "C9876544,Zorg BV,Arnhem,2022-01-01,2023-01-01,opleiding,3,4\n",
    )
    load = night.run()["outflow/export.csv"]
    assert load.status == "quarantined"
    assert "line 1, column '#1': unknown column (its text is not shown: it could be personal data; is the header " in (
        load.error
    )
    assert "C98765" not in night.audit_text() and "2022-01-01" not in load.error


def test_the_screen_knows_the_elfproef_and_leaves_ordinary_text_alone():
    assert looks_personal("123456782") == "a citizen service number (BSN)"
    assert looks_personal("123456789") is None  # nine digits that fail the elfproef
    assert looks_personal("2023-01-01") is None and looks_personal("Locatie 12") is None
    assert looks_personal("GGNet Apeldoorn") is None and looks_personal("opleiding") is None


# --- 3. text without bounds ---------------------------------------------------------------------


def test_a_text_longer_than_its_contract_allows_quarantines_the_file(tmp_path):
    night = Night(tmp_path)
    write(night.inbox / "ips_quarterly" / "long.csv", f"{HEADER}\nLONG,{'x' * 2_500_000},{ROW}\n")
    load = night.run()["ips_quarterly/long.csv"]
    assert load.status == "quarantined"
    assert "line 2, column 'program_name': holds 2500000 characters, more than the 200 this column may have" in (
        load.error
    )
    assert "xxxxxxxxxx" not in load.error and len(load.error) < 400


def test_the_registry_refuses_a_text_column_without_a_maximum_length(tmp_path):
    contract = write(
        tmp_path / "c.yaml",
        "name: c\ndescription: d\nkey: [a]\ncolumns:\n  - {name: a, type: text, required: true}\n",
    )
    with pytest.raises(RegistryError, match="text column 'a' needs max_length"):
        _load_contract(contract)
    for contract in load_registry().contracts.values():
        assert all(c.max_length for c in contract.columns if c.type == "text"), contract.name


# --- 4. invisible characters -------------------------------------------------------------------


def test_zero_width_and_non_breaking_characters_make_no_second_programme(tmp_path):
    night = Night(tmp_path)
    header = HEADER.replace("caseload", "caseload\u00a0").replace("fte", "\u200bfte")
    write(night.inbox / "ips_quarterly" / "a.csv", f"{header}\nZWSPCODE,Naam,{ROW}\n")
    write(night.inbox / "ips_quarterly" / "b.csv", f"{HEADER}\nZWSPCODE\u200b,Naam\u00a0,2018,2,80,5,6.3,30,20,2,1,3\n")
    write(night.inbox / "ips_quarterly" / "c.csv", f"{HEADER}\n\uff3aWSPCODE\u2060 ,Naam,2018,3,80,5,6.3,30,20,2,1,3\n")
    loads = night.run()
    assert {f.status for f in loads.values()} == {"loaded"}, loads
    assert night.raw("select distinct program_id, program_name from raw.ips_quarterly") == [("ZWSPCODE", "Naam")]


def test_an_invisible_character_left_in_a_name_is_shown_escaped(tmp_path):
    night = Night(tmp_path)
    write(night.inbox / "ips_quarterly" / "q\u200b1.csv", f"{HEADER}\nP,Een,2018,1,80,5,zes,30,20,2,1,3\n")
    write(night.inbox / "ips_quarterly" / "q2.csv", f"{HEADER},opmerking\u200b\nP,Een,{ROW},x\n")
    loads = night.run()
    assert loads["ips_quarterly/q\\u200b1.csv"].error.startswith("ips_quarterly/q\\u200b1.csv: line 2")
    assert "column 'opmerking': unknown column" in loads["ips_quarterly/q2.csv"].error
    assert normalised(" a\u200bb\u00a0\tc\n") == "ab  c"
    assert shown("x\u200by\nz") == "x\\u200by\\nz"


# --- 5. the line an editor shows ---------------------------------------------------------------


def test_lines_are_counted_as_an_editor_shows_them_when_records_span_lines(tmp_path):
    night = Night(tmp_path)
    folder = night.inbox / "ips_quarterly"
    body = f'A,"Een\nmet regel",{ROW}\nB,"Twee\n\nregels",{ROW}\n\n'
    write(folder / "a_cell.csv", f"{HEADER}\n{body}C,Drie,2018,1,80,5,x,30,20,2,1,3\n")
    write(folder / "b_width.csv", f"{HEADER}\n{body}C,Drie,{ROW},9\n")
    write(folder / "c_blank.csv", f"{HEADER}\nA,Een,{ROW}\n\n\nC,Drie,{ROW},9\n")
    loads = night.run()
    # a_cell.csv: the bad cell is on line 8 of the file (lines 3 and 5-6 continue quoted values, line 7 is empty)
    assert (
        "ips_quarterly/a_cell.csv: line 8, column 'fte', value 'x': not a number"
        in loads["ips_quarterly/a_cell.csv"].error
    )
    assert loads["ips_quarterly/b_width.csv"].error == (
        "ips_quarterly/b_width.csv: line 8: Expected Number of Columns: 12 Found: 13"
    )
    assert loads["ips_quarterly/c_blank.csv"].error == (
        "ips_quarterly/c_blank.csv: line 5: Expected Number of Columns: 12 Found: 13"
    )


def test_a_malformed_line_is_never_quoted_whatever_duckdb_prints(tmp_path):
    night = Night(tmp_path, "outflow")
    write(
        night.inbox / "outflow" / "export.csv",
        f'{OUTFLOW_HEADER}\nC1,"Zorg\nBV",Arnhem,2022-01-01,2023-01-01,opleiding,3,4\n'
        "C5551234,Zorg BV,Arnhem,2022-01-01,2023-01-01,opleiding,3,4,extra\n",
    )
    load = night.run()["outflow/export.csv"]
    assert load.error == "outflow/export.csv: line 4: Expected Number of Columns: 8 Found: 9"


def test_a_bad_date_is_quoted_as_written(tmp_path):
    night = Night(tmp_path, "outflow")
    write(
        night.inbox / "outflow" / "export.csv",
        f"{OUTFLOW_HEADER}\nC5550001,Zorg BV,Arnhem,2022-01-01,2023-02-31,opleiding,3,4\n",
    )
    load = night.run()["outflow/export.csv"]
    assert "line 2, column 'end_date', value '2023-02-31': not a date" in load.error
    assert "C555" not in load.error


# --- 6. file names -----------------------------------------------------------------------------


def test_any_file_name_is_handled_escaped_and_kept_with_a_bounded_name(tmp_path):
    night = Night(tmp_path)
    folder = night.inbox / "ips_quarterly"
    folder.mkdir(parents=True)
    cp1252 = os.fsencode(folder) + b"/ex\xebport.csv"  # a cp1252 e-umlaut: no UTF-8
    Path(os.fsdecode(cp1252)).write_text(f"{HEADER}\nCP,Een,{ROW}\n", encoding="utf-8")
    long_name = "q" * 249 + ".csv"  # 253 bytes: with a hash prefix no file system takes it
    write(folder / long_name, f"{HEADER}\nLONG,Een,2018,1,80,5,zes,30,20,2,1,3\n")
    forged = "a.csv\nrefresh failed: everything is lost.csv"
    write(folder / forged, f"{HEADER}\nNL,Een,2018,1,80,5,zes,30,20,2,1,3\n")
    loads = night.run()
    assert loads["ips_quarterly/ex\\xebport.csv"].status == "loaded"
    assert night.raw("select _file_name from raw.ips_quarterly") == [("ips_quarterly/ex\\xebport.csv",)]
    escaped = "ips_quarterly/a.csv\\nrefresh failed: everything is lost.csv"
    assert loads[escaped].status == "quarantined" and "\n" not in loads[escaped].error
    assert loads[f"ips_quarterly/{long_name}"].status == "quarantined"
    kept = sorted(p.name for p in night.quarantine.iterdir())
    assert len(kept) == 2 and all(len(name.encode()) <= 160 for name in kept), kept
    assert quarantine_name(folder / long_name, "0" * 64).endswith("….csv")


def test_the_summary_of_a_night_with_hostile_names_keeps_one_line_per_thing(tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "co.duckdb"
    write(inbox / "ips_quarterly" / "a.csv", f"{HEADER}\nP,Een,{ROW}\n")
    write(
        inbox / "ips_quarterly" / "b.csv\nrefresh failed: forged.csv", f"{HEADER}\nQ,Twee,2018,1,80,5,zes,30,20,2,1,3\n"
    )
    folder = os.fsencode(inbox / "ips_quarterly")
    Path(os.fsdecode(folder + b"/d\xe9j\xe0.csv")).write_text(f"{HEADER}\nR,Drie,{ROW}\n", encoding="utf-8")
    write(inbox / "ips_quarterly" / ("z" * 251 + ".csv"), f"{HEADER}\nS,Vier,2018,1,80,5,zes,30,20,2,1,3\n")
    done = run_refresh(inbox, warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": "k"})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not any(line.startswith("refresh failed") for line in lines), done.stdout
    assert "files:     2 loaded (2 rows), 2 quarantined, 0 duplicate" in done.stdout
    assert "  quarantined: ips_quarterly/b.csv\\nrefresh failed: forged.csv: line 2" in done.stdout
    second = run_refresh(inbox, warehouse, env={"CARE_OUTCOMES_PSEUDONYM_KEY": "k"})
    assert second.returncode == 0 and "nothing new since" in second.stdout, second.stdout + second.stderr
    assert "2 file(s) wait" in second.stdout, "the quarantined files under odd names are found waiting"


# --- 7. workbooks that explode ----------------------------------------------------------------


def _form(path: Path, rows: list[list]) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Kwartaalrapportage"
    for row in rows:
        sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


FORM_HEADER = [
    "Programma code", "Programma", "Jaar", "Kwartaal", "Aantal cliënten", "Aantal nieuw ingestroomde cliënten",
    "FTE trajectbegeleider", "Aantal cliënten met betaald werk", "Aantal cliënten met betaald werk volgens UWV",
    "Aantal cliënten met opleiding", "Succesvol uitgestroomd", "Onsuccesvol uitgestroomd",
]  # fmt: skip


SHEET = "xl/worksheets/sheet1.xml"


def _rewrite(path: Path, part: str, change) -> None:
    """Rewrite one part of a workbook (a zip), streaming ``change(write)`` into it."""
    source = zipfile.ZipFile(path)
    assert part in source.namelist(), source.namelist()
    target = path.with_suffix(".new")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            if info.filename == part:
                with out.open(part, "w", force_zip64=True) as fh:
                    change(fh, source.read(part))
            else:
                out.writestr(info, source.read(info.filename))
    source.close()
    target.replace(path)


def test_workbooks_that_explode_are_quarantined_and_the_night_goes_on(tmp_path):
    night = Night(tmp_path)
    folder = night.inbox / "ips_quarterly_formulier"
    row = ["GOED", "Goed", 2018, 1, 80, 5, 6.3, 30, 20, 2, 1, 3]
    names = [s.name for s in night.registry.sources_for("ips_quarterly") if s.folder == "ips_quarterly_formulier"]
    assert names, "the Dutch form source reads this folder"
    _form(folder / "a_goed.xlsx", [FORM_HEADER, row])
    # one stray cell at the last cell Excel has: a 17-billion-cell rectangle
    stray = _form(folder / "b_stray.xlsx", [FORM_HEADER, [*row[:1], "Stray", *row[2:]]])
    book = openpyxl.load_workbook(stray)
    book.active["XFD1048576"] = "x"
    book.save(stray)
    # the same, with the rectangle it declares removed: only the reader's own limits stop it
    undeclared = folder / "c_undeclared.xlsx"
    undeclared.write_bytes(stray.read_bytes())
    _rewrite(
        undeclared,
        SHEET,
        lambda fh, xml: fh.write(re.sub(rb"<dimension [^>]*/>", b"", xml)),
    )
    # a cell whose text unpacks to 300 MB from a few hundred kilobytes
    bomb = _form(folder / "d_bomb.xlsx", [FORM_HEADER, [*row[:1], "BOMB", *row[2:]]])

    def huge(fh, xml):
        head, tail = xml.split(b"BOMB")
        fh.write(head)
        for _ in range(300):
            fh.write(b"a" * (1 << 20))
        fh.write(tail)

    _rewrite(bomb, SHEET, huge)
    assert bomb.stat().st_size < 2 << 20
    loads = night.run()

    assert loads["ips_quarterly_formulier/a_goed.xlsx"].status == "loaded"
    stray_error = loads["ips_quarterly_formulier/b_stray.xlsx"].error
    assert "spans A1:XFD1048576 (17,179,869,184 cells), more than the 20,000,000 a sheet may have" in stray_error
    undeclared_error = loads["ips_quarterly_formulier/c_undeclared.xlsx"].error
    assert "the Excel reader stopped on this workbook" in undeclared_error, undeclared_error
    assert "unpacks to 300 MB, more than the 256 MB a workbook may take" in (
        loads["ips_quarterly_formulier/d_bomb.xlsx"].error
    )
    assert {f.status for name, f in loads.items() if name != "ips_quarterly_formulier/a_goed.xlsx"} == {"quarantined"}
    assert night.raw("select distinct program_id from raw.ips_quarterly") == [("GOED",)]


def test_a_cell_longer_than_excel_allows_is_refused_by_the_reader(tmp_path):
    night = Night(tmp_path)
    form = _form(
        night.inbox / "ips_quarterly_formulier" / "lang.xlsx",
        [FORM_HEADER, ["L", "LANG", 2018, 1, 80, 5, 6.3, 30, 20, 2, 1, 3]],
    )
    _rewrite(form, SHEET, lambda fh, xml: fh.write(xml.replace(b"LANG", b"b" * 40_000)))
    load = night.run()["ips_quarterly_formulier/lang.xlsx"]
    assert load.error.endswith(
        "cell Kwartaalrapportage!B2 holds 40,000 characters, more than Excel allows in a cell (32,767)"
    )


def test_inbox_entries_are_listed_without_following_links(tmp_path):
    inbox = tmp_path / "inbox"
    write(inbox / "outflow" / "sub" / "a.csv", "x")
    (inbox / "outflow" / "up").symlink_to(tmp_path, target_is_directory=True)
    registry = load_registry()
    entries = inbox_entries(inbox, registry.sources["outflow"])
    assert [(e.name, e.kind) for e in entries] == [("outflow/sub/a.csv", None), ("outflow/up", "a symbolic link")]
    assert stat.S_ISDIR(os.lstat(tmp_path).st_mode)


def test_the_bundled_sample_still_loads_whole(tmp_path):
    """Normalising and screening change nothing of clean data: every sample file loads."""
    registry = load_registry()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    install_key(con, b"k")
    for contract in registry.contracts.values():
        for load in ingest_contract(con, registry, contract, SAMPLE, tmp_path / "q", pseudonymise=hmac_sql):
            assert load.status == "loaded", load.error
