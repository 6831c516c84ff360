"""Ingest without Dagster: encodings, formats, bad input quarantined with a reason, duplicates, idempotency."""

from __future__ import annotations

from pathlib import Path

import duckdb
import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.ingest.load import ingest_contract
from pipelines.ingest.registry import load_registry

HEADER = (
    "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
    "outflow_successful,outflow_unsuccessful"
)
GOOD = "P1,Programma Één,2018,1,100,10,5.5,30,20,5,3,6"


@pytest.fixture()
def inbox(tmp_path) -> Path:
    (tmp_path / "inbox" / "ips_quarterly").mkdir(parents=True)
    return tmp_path / "inbox"


def ingest(inbox: Path, db: Path | None = None):
    registry = load_registry(extra_dirs=())
    con = duckdb.connect(str(db or inbox.parent / "work.duckdb"))
    try:
        loads = ingest_contract(con, registry, registry.contracts["ips_quarterly"], inbox, inbox.parent / "quarantine")
        raw = con.execute("select * from raw.ips_quarterly order by _load_id, _source_row").fetchall()
        return {load.file_name.split("/")[-1]: load for load in loads}, raw
    finally:
        con.close()


def write(inbox: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> None:
    (inbox / "ips_quarterly" / name).write_bytes(data if isinstance(data, bytes) else data.encode(encoding))


def test_utf8_bom_cp1252_trailing_blanks_and_spaces_load(inbox):
    write(inbox, "bom.csv", "\ufeff" + HEADER + "\n" + GOOD + "\n\n\n")
    write(
        inbox, "cp1252.csv", HEADER + "\r\n" + GOOD.replace("P1", "P2").replace("Één", "Zuid € Één") + "\r\n", "cp1252"
    )
    write(inbox, "spaces.csv", HEADER + "\n" + " P3 , Drie ,2018, 1 ,100,,5.5,30,20,5,3,6 \n")
    loads, raw = ingest(inbox)
    assert {n: load.status for n, load in loads.items()} == {
        "bom.csv": "loaded",
        "cp1252.csv": "loaded",
        "spaces.csv": "loaded",
    }
    names = {r[0]: r[1] for r in raw}
    assert names == {"P1": "Programma Één", "P2": "Programma Zuid € Één", "P3": "Drie"}
    p3 = next(r for r in raw if r[0] == "P3")
    assert p3[5] is None  # empty new_clients stays NULL, not 0


def test_generic_xlsx_with_excel_doubles_loads(inbox):
    book = openpyxl.Workbook()
    book.active.append(HEADER.split(","))
    book.active.append(["P1", "Een", 2018.0, 2.0, 100.0, None, 5.5, 30.0, 20.0, 5.0, 3.0, 6.0])
    book.save(inbox / "ips_quarterly" / "form.xlsx")
    loads, raw = ingest(inbox)
    assert loads["form.xlsx"].status == "loaded"
    assert raw[0][:7] == ("P1", "Een", 2018, 2, 100, None, 5.5)


@pytest.mark.parametrize(
    "name, content, expected",
    [
        (
            "negative.csv",
            HEADER + "\n" + GOOD.replace(",100,", ",-3,"),
            ["line 2", "column 'caseload'", "value '-3'", "at least 0"],
        ),
        (
            "text.csv",
            HEADER + "\n" + GOOD.replace(",5.5,", ",vijf,"),
            ["line 2", "column 'fte'", "value 'vijf'", "not a number"],
        ),
        (
            "quarter5.csv",
            HEADER + "\n" + GOOD.replace("2018,1,", "2018,5,"),
            ["column 'quarter'", "value '5'", "at most 4"],
        ),
        (
            "over.csv",
            HEADER + "\n" + GOOD.replace(",30,20,", ",130,20,"),
            ["line 2", "paid_work=130", "caseload=100", "paid work within caseload"],
        ),
        (
            "uwv.csv",
            HEADER + "\n" + GOOD.replace(",30,20,", ",30,40,"),
            ["paid_work_uwv=40", "UWV paid work within paid work"],
        ),
        ("future.csv", HEADER + "\n" + GOOD.replace("2018,1,", "2999,1,"), ["column 'year'", "value '2999'", "future"]),
        (
            "missing.csv",
            HEADER.replace(",fte", "") + "\n" + GOOD.replace(",5.5", ""),
            ["column 'fte'", "missing column"],
        ),
        ("extra.csv", HEADER + ",remarks\n" + GOOD + ",x", ["column 'remarks'", "unknown column"]),
        ("semicolon.csv", (HEADER + "\n" + GOOD).replace(",", ";"), ["separated by ';'", "expects ','"]),
        ("empty.csv", "", ["empty (0 bytes)"]),
        ("header_only.csv", HEADER + "\n", ["no data rows"]),
        ("binary.csv", b"\x00\x01\x02PK\x00garbage", ["binary"]),
        ("truncated.csv", HEADER + "\n" + GOOD + "\nP9,Negen,2018", ["line 3", "Expected Number of Columns"]),
        (
            "twice.csv",
            HEADER + "\n" + GOOD + "\n" + GOOD.replace(",30,", ",31,"),
            ["lines 2, 3", "same key but different values"],
        ),
        ("notes.txt.pdf", "not a submission", ["does not match", "*.csv"]),
    ],
)
def test_bad_file_is_quarantined_with_an_actionable_reason(inbox, name, content, expected):
    write(inbox, "good.csv", HEADER + "\n" + GOOD.replace("P1", "OK"))
    write(inbox, name, content)
    loads, raw = ingest(inbox)
    bad = loads[name]
    assert bad.status == "quarantined" and bad.rows_loaded == 0
    assert bad.error.startswith(f"ips_quarterly/{name}: ")
    for piece in expected:
        assert piece in bad.error, bad.error
    assert loads["good.csv"].status == "loaded", "every other file still loads"
    assert [r[0] for r in raw] == ["OK"], "nothing of the bad file reaches raw"
    kept = list((inbox.parent / "quarantine").glob(f"*_{name}"))
    assert len(kept) == 1 and kept[0].read_bytes() == (inbox / "ips_quarterly" / name).read_bytes()


def test_byte_identical_file_is_a_duplicate_and_a_second_ingest_adds_nothing(inbox):
    write(inbox, "a_q1.csv", HEADER + "\n" + GOOD)
    write(inbox, "b_q1_copy.csv", HEADER + "\n" + GOOD)
    loads, raw = ingest(inbox)
    assert loads["b_q1_copy.csv"].status == "duplicate"
    assert "same bytes as ips_quarterly/a_q1.csv" in loads["b_q1_copy.csv"].error
    assert len(raw) == 1
    again, raw_again = ingest(inbox)
    assert again == {} and raw_again == raw


def test_identical_repeated_rows_are_not_a_conflict(inbox):
    write(inbox, "repeat.csv", HEADER + "\n" + GOOD + "\n" + GOOD)
    loads, raw = ingest(inbox)
    assert loads["repeat.csv"].status == "loaded"


OUTFLOW_HEADER = "client_id,provider,location,start_date,end_date,destination,ladder_step_start,ladder_step_end"


def ingest_outflow(tmp_path, name, content):
    from pipelines.ingest.pseudonymise import hmac_sql, install_key

    inbox = tmp_path / "inbox"
    (inbox / "outflow").mkdir(parents=True, exist_ok=True)
    (inbox / "outflow" / name).write_text(content, encoding="utf-8")
    registry = load_registry(extra_dirs=())
    con = duckdb.connect(str(tmp_path / "work.duckdb"))
    install_key(con, b"k")
    (load,) = ingest_contract(
        con, registry, registry.contracts["outflow"], inbox, tmp_path / "q", pseudonymise=hmac_sql
    )
    con.close()
    return load


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "SECRET-ID-1,P,Arnhem,2023-05-01,2023-01-01,opleiding,3,5",
            ["line 2, column 'start_date, end_date': breaks rule: end not before start"],
        ),
        (
            "SECRET-ID-1,P,Arnhem,2022-05-01,2023-01-01,naar de maan,3,5",
            ["column 'destination'", "value 'naar de maan'", "unknown value"],
        ),
        (
            "SECRET-ID-1,P,Arnhem,2022-05-01,2023-01-01,opleiding,3,7",
            ["line 2, column 'ladder_step_end': must be at most 6"],
        ),
        (
            "SECRET-ID-1,P,Arnhem,01-05-2022,2023-01-01,opleiding,3,5",
            # a bad date is quoted as written (issue 25): a date is no client id
            ["column 'start_date', value '01-05-2022': not a date (expected yyyy-mm-dd)"],
        ),
        (",P,Arnhem,2022-05-01,2023-01-01,opleiding,3,5", ["column 'client_id'", "empty, but required"]),
        # a line shifted by one column: the client id lands in another column, whose value is not shown either
        (
            ",SECRET-ID-9,Arnhem,2022-05-01,2023-01-01,opleiding,3,5",
            ["line 2, column 'client_id': empty, but required"],
        ),
        (
            "SECRET-ID-1,P,Arnhem,2022-05-01,2023-01-01,opleiding,3,SECRET-ID-7",
            ["column 'ladder_step_end': not a whole"],
        ),
        ("SECRET-ID-1,P,Arnhem,2022-05-01,2023-01-01,SECRET-ID-7,3,5", ["line 2, column 'destination': unknown value"]),
    ],
)
def test_bad_outflow_rows_are_quarantined_without_showing_the_client_id(tmp_path, line, expected):
    load = ingest_outflow(tmp_path, "export.csv", OUTFLOW_HEADER + "\n" + line + "\n")
    assert load.status == "quarantined"
    for piece in expected:
        assert piece in load.error, load.error
    shown = load.error.replace("value 'naar de maan'", "").replace("value '01-05-2022'", "")
    assert "SECRET-ID" not in load.error and "value '" not in shown


def test_duplicate_deregistration_reason_hides_the_client_id(tmp_path):
    rows_ = [
        "SECRET-ID-1,P,Arnhem,2022-05-01,2023-01-01,opleiding,3,5",
        "SECRET-ID-1,P,Arnhem,2022-05-01,2023-01-01,pensioen,3,",
    ]
    load = ingest_outflow(tmp_path, "export.csv", "\n".join([OUTFLOW_HEADER, *rows_]) + "\n")
    assert load.status == "quarantined"
    assert "lines 2, 3 have the same key but different values" in load.error
    assert "SECRET-ID" not in load.error


FIDELITY_HEADER = "program_id,assessment_date,item_code,score_ips_a,score_ips_o"


def ingest_fidelity(tmp_path, folder, name, content: bytes | str):
    inbox = tmp_path / "inbox"
    (inbox / folder).mkdir(parents=True, exist_ok=True)
    (inbox / folder / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    registry = load_registry(extra_dirs=())
    con = duckdb.connect(str(tmp_path / "work.duckdb"))
    (load,) = ingest_contract(con, registry, registry.contracts["ips_fidelity"], inbox, tmp_path / "q")
    raw = con.execute(
        "select program_id, assessment_date, item_code, score_ips_a, score_ips_o "
        "from raw.ips_fidelity order by item_code"
    ).fetchall()
    con.close()
    return load, raw


@pytest.mark.parametrize(
    "lines, expected",
    [
        (["P,2018-01-01,BG99,3,3"], ["item_code=BG99", "item code in the fidelity item catalogue"]),
        (["P,2018-01-01,BG2,7,3"], ["column 'score_ips_a'", "value '7'", "at most 5"]),
        (["P,2018-01-01,BG2,0,3"], ["column 'score_ips_a'", "value '0'", "at least 1"]),
        (
            ["P,2018-01-01,BG1b,4,4"],
            ["item_code=BG1b", "score_ips_a=4", "IPS-A score only on an item of the IPS-A scale"],
        ),
        (["P,2018-01-01,BG10,4,4"], ["score_ips_o=4", "IPS-O score only on an item of the IPS-O scale"]),
        (["P,2018-01-01,BG2,4,4", "P,2018-01-01,BG2,4,4"], ["lines 3, 4 repeat the same key"]),
        (["P,2018-01-01,BG2,vier,4"], ["value 'vier'", "not a whole number"]),
    ],
)
def test_bad_fidelity_assessment_is_quarantined(tmp_path, lines, expected):
    load, raw = ingest_fidelity(
        tmp_path, "ips_fidelity", "p.csv", "\n".join([FIDELITY_HEADER, "P,2018-01-01,BG6,4,4", *lines]) + "\n"
    )
    assert load.status == "quarantined" and raw == []
    for piece in expected:
        assert piece in load.error, load.error


def test_dutch_fidelity_form_takes_programme_and_date_from_the_file_name(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Scores"
    sheet.append(["Onderdeel", "Item", "Omschrijving", "Score IPS-A", "Score IPS-O"])
    sheet.append(["Begeleiding", "BG2", "Openheid", 5, "nvt"])
    sheet.append(["Begeleiding", "BG1a", "Steun bij inkomsten bij IPS-A", 4, "n.v.t."])
    path = tmp_path / "form.xlsx"
    book.save(path)
    load, raw = ingest_fidelity(tmp_path, "ips_fidelity_formulier", "ZUID_2019-03-31.xlsx", path.read_bytes())
    assert load.status == "loaded", load.error
    assert [(r[0], str(r[1]), r[2], r[3], r[4]) for r in raw] == [
        ("ZUID", "2019-03-31", "BG1a", 4, None),
        ("ZUID", "2019-03-31", "BG2", 5, None),
    ]


def test_dutch_fidelity_form_with_an_unexpected_name_is_quarantined(tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Scores"
    book.active.append(["Item", "Score IPS-A", "Score IPS-O"])
    path = tmp_path / "form.xlsx"
    book.save(path)
    load, _ = ingest_fidelity(tmp_path, "ips_fidelity_formulier", "meting zuid.xlsx", path.read_bytes())
    assert load.status == "quarantined"
    assert "value 'meting zuid.xlsx'" in load.error and "the file name does not match" in load.error


@given(st.binary(max_size=80).map(lambda b: bytes(b"ab\r\n\n"[x % 5] for x in b)), st.integers(1, 9))
def test_lines_are_counted_alike_whatever_the_chunks(data, size):
    """Line ends and empty lines (which DuckDB skips and a person counts) are found as in the whole text, wherever
    the chunks of a large file fall (inside a CRLF, or between the two line ends around an empty line), over bytes
    and over the text of a copy."""
    from pipelines.ingest.read import _BLANK_LINE, _scan_chunks

    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    crlf = data.count(b"\r\n")
    whole = (crlf, data.count(b"\n") - crlf, [data.count(b"\n", 0, m.start()) + 1 for m in _BLANK_LINE.finditer(data)])
    for scanned in (_scan_chunks(chunks), _scan_chunks([c.decode() for c in chunks])):
        assert (scanned.crlf, scanned.bare_lf, scanned.blank) == whole
