"""Read one inbound file, CSV or XLSX, into a DuckDB temp table of text cells.

The table ``_cells`` has ``_row`` (the spreadsheet row number a person sees, header = row 1) and
one VARCHAR column ``c0 .. cN`` per header cell. CSV goes through DuckDB's ``read_csv``; XLSX
through python-calamine into Arrow. Nothing here loops over rows in Python.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.ingest.registry import Source

CHUNK = 1 << 20


class Unreadable(Exception):
    """The file cannot be read as the source says it should be; the message is for a person."""


def file_format(path: Path, source: Source) -> str:
    if source.format != "auto":
        return source.format
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise Unreadable(f"cannot tell the format from the extension '{suffix}' (expected .csv or .xlsx)")


def read_cells(con: duckdb.DuckDBPyConnection, path: Path, source: Source) -> list[str]:
    """Fill temp table ``_cells`` from the file; return the header as written in the file."""
    if path.stat().st_size == 0:
        raise Unreadable("the file is empty (0 bytes)")
    if file_format(path, source) == "xlsx":
        return _read_xlsx(con, path, source)
    return _read_csv(con, path, source)


# --- CSV -------------------------------------------------------------------------------------


def _detect_encoding(path: Path, wanted: str) -> str:
    """The declared encoding, or for 'auto': UTF-8 when the bytes are valid UTF-8, else cp1252."""
    with path.open("rb") as fh:
        head = fh.read(CHUNK)
    if b"\x00" in head:
        raise Unreadable("the file is binary (it contains NUL bytes), not CSV text")
    candidates = ["utf-8", "cp1252"] if wanted == "auto" else [wanted]
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)()
        offset = 0
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    decoder.decode(chunk)
                    offset += len(chunk)
                decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError as exc:
            error = f"not valid {encoding} text (byte {offset + exc.start + 1} is 0x{exc.object[exc.start]:02x})"
    raise Unreadable(error)


def _utf8_copy(path: Path, encoding: str, workdir: Path) -> Path:
    """DuckDB reads UTF-8 only without the encodings extension: transcode other encodings in chunks."""
    target = workdir / (path.stem + ".utf8.csv")
    with path.open("r", encoding=encoding, newline="") as src, target.open("w", encoding="utf-8", newline="") as dst:
        while text := src.read(CHUNK):
            dst.write(text)
    return target


def _header(path: Path, delimiter: str) -> list[str]:
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        first = next(csv.reader(io.StringIO(fh.readline()), delimiter=delimiter), [])
    header = [cell.strip() for cell in first]
    if not any(header):
        raise Unreadable("the first line holds no column names")
    if len(header) == 1:
        others = [d for d in (",", ";", "\t", "|") if d != delimiter and d in header[0]]
        if others:
            raise Unreadable(
                f"the header has one column only: the file seems separated by {others[0]!r}, "
                f"but this source expects {delimiter!r}"
            )
    return header


_CSV_ERROR = re.compile(r"CSV Error on Line: (\d+)\s*\nOriginal Line: ([^\n]*)\n(.*)", re.S)


def _csv_error(exc: duckdb.Error) -> str:
    """DuckDB's CSV error as one line: the row, what is wrong with it, and how it reads."""
    match = _CSV_ERROR.search(str(exc))
    if not match:
        return f"cannot be read as CSV: {str(exc).splitlines()[0]}"
    line, original, rest = match.groups()
    problem = next((text.strip() for text in rest.splitlines() if text.strip()), "")
    if not problem or problem.startswith("Possible fixes"):
        problem = "malformed line"
    return f"row {line}: {problem} (line reads {original[:80]!r})"


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path, source: Source) -> list[str]:
    encoding = _detect_encoding(path, source.encoding)
    with tempfile.TemporaryDirectory(prefix="care-outcomes-") as tmp:
        readable = path if encoding == "utf-8" else _utf8_copy(path, encoding, Path(tmp))
        header = _header(readable, source.delimiter)
        columns = {f"c{i}": "VARCHAR" for i in range(len(header))}
        try:
            con.execute(
                "create or replace temp table _file as select * from read_csv(?, header = true, "
                "delim = ?, quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
                "auto_detect = false, columns = ?)",
                [str(readable), source.delimiter, columns],
            )
        except duckdb.Error as exc:
            raise Unreadable(_csv_error(exc)) from None
    # rowid follows the file's order; the header is row 1
    con.execute("create or replace temp table _cells as select rowid + 2 as _row, * from _file")
    con.execute("drop table _file")
    return header


# --- XLSX ------------------------------------------------------------------------------------


def _cell_text(value) -> str | None:
    """Excel gives numbers as doubles and dates as datetimes: write them as a person would type them."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _read_xlsx(con: duckdb.DuckDBPyConnection, path: Path, source: Source) -> list[str]:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises several private error types
        raise Unreadable(f"not a readable Excel workbook ({exc})") from None
    names = workbook.sheet_names
    if source.sheet is not None and source.sheet not in names:
        raise Unreadable(f"the workbook has no sheet named {source.sheet!r} (sheets: {', '.join(names)})")
    sheet = workbook.get_sheet_by_name(source.sheet or names[0])
    try:
        rows = sheet.to_python(skip_empty_area=False)
    except Exception as exc:
        raise Unreadable(f"sheet {sheet.name!r} cannot be read ({exc})") from None
    if len(rows) < source.header_row:
        raise Unreadable(f"sheet {sheet.name!r} has no header row (expected on row {source.header_row})")
    header = [(_cell_text(v) or "").strip() for v in rows[source.header_row - 1]]
    while header and not header[-1]:
        header.pop()
    if not any(header):
        raise Unreadable(f"sheet {sheet.name!r} row {source.header_row} holds no column names")
    body = rows[source.header_row :]
    width = len(header)
    columns = list(zip(*[(list(r) + [None] * width)[:width] for r in body])) or [()] * width
    table = pa.table(
        {"_row": pa.array(range(source.header_row + 1, source.header_row + 1 + len(body)), pa.int64())}
        | {f"c{i}": pa.array([_cell_text(v) for v in col], pa.string()) for i, col in enumerate(columns)}
    )
    con.register("_xlsx_arrow", table)
    con.execute("create or replace temp table _cells as select * from _xlsx_arrow")
    con.unregister("_xlsx_arrow")
    return header
