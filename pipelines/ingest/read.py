"""Read one inbound file, CSV or XLSX, into a DuckDB temp table of text cells.

The table ``_cells`` has ``_row`` (the line or spreadsheet row a person sees, header = 1) and one
VARCHAR column ``c0 .. cN`` per header cell. CSV goes through DuckDB's ``read_csv``; XLSX through
python-calamine into Arrow. Nothing here loops over rows in Python.
"""

from __future__ import annotations

import codecs
import csv
import io
import pickle
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.ingest.registry import Source
from pipelines.ingest.screen import normalised
from pipelines.ingest.workbook import CELL_FAULT, column_letter  # noqa: F401 - validate.py takes them from here
from pipelines.warehouse import temp_folder, without_values

CHUNK = 1 << 20


class Unreadable(Exception):
    """The file cannot be read as the source says it should be; the message is for a person."""


@dataclass(frozen=True)
class FileCells:
    """What read_cells found: the header as written, and the sheet read (XLSX) to name cells by."""

    header: list[str]
    sheet: str | None = None


def file_format(path: Path, source: Source) -> str:
    if source.format != "auto":
        return source.format
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise Unreadable(f"cannot tell the format from the extension '{suffix}' (expected .csv or .xlsx)")


def read_cells(
    con: duckdb.DuckDBPyConnection, path: Path, source: Source, named: Path | None = None, fd: int | None = None
) -> FileCells:
    """Fill temp table ``_cells`` from the file at ``path``; ``named``: the name it has in the inbox (its format goes
    by that name's extension), where ``path`` opens the file checked by its descriptor ``fd`` (load.fd_path)."""
    if path.stat().st_size == 0:
        raise Unreadable("the file is empty (0 bytes)")
    if file_format(named or path, source) == "xlsx":
        return _read_xlsx(con, path, source, fd)
    return _read_csv(con, path, source)


# --- CSV -------------------------------------------------------------------------------------

# after decoding UTF-8 with 'surrogateescape' (a byte that is not UTF-8 becomes U+DC80-U+DCFF): a character that
# is neither ASCII nor such a byte is a multi-byte UTF-8 character
_DECODED_UTF8_CHARACTER = re.compile("[^\x00-\x7f\udc80-\udcff]")
_BLANK_LINE = re.compile(rb"(?<=\n)\r?\n")
_BLANK_TEXT = re.compile(r"(?<=\n)\r?\n")


def _chunks(path: Path):
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _line_at(path: Path, offset: int) -> int:
    """The line (1-based) holding byte ``offset``."""
    line, seen = 1, 0
    for chunk in _chunks(path):
        if seen + len(chunk) > offset:
            return line + chunk.count(b"\n", 0, offset - seen)
        line += chunk.count(b"\n")
        seen += len(chunk)
    return line


def _invalid_at(path: Path, encoding: str) -> tuple[int, int] | None:
    """(offset, byte) of the first byte of the file that is not valid ``encoding``; None when all are."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    try:
        for chunk in _chunks(path):
            decoder.decode(chunk)
            offset += len(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return offset + exc.start, exc.object[exc.start]
    return None


def _not_valid(path: Path, encoding: str, at: int, byte: int) -> Unreadable:
    return Unreadable(f"line {_line_at(path, at)}, byte {at + 1}: not valid {encoding} text (0x{byte:02x})")


def _detect_encoding(path: Path, wanted: str) -> str:
    """The declared encoding, or for 'auto': UTF-16 with a byte-order mark, UTF-8 when the bytes are valid UTF-8,
    else cp1252; a UTF-8 file with a damaged byte is named as such, never decoded as cp1252. A file read as UTF-8
    is checked here; one in another encoding while it is copied as UTF-8 (``_utf8_copy``), in the same pass."""
    with path.open("rb") as fh:
        head = fh.read(CHUNK)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        if head[1:200:2].count(0) > 40 or head[0:200:2].count(0) > 40:
            raise Unreadable("the file is UTF-16 text without a byte-order mark; save it as UTF-8 (or with a BOM)")
        raise Unreadable("the file is binary (it contains NUL bytes), not CSV text")
    if wanted not in ("auto", "utf-8"):
        return wanted
    bad = _invalid_at(path, "utf-8")
    if bad is None:
        return "utf-8"
    if wanted == "utf-8":
        raise _not_valid(path, "utf-8", *bad)
    if _holds_utf8_character(path):
        at, byte = bad
        raise Unreadable(
            f"line {_line_at(path, at)}, byte {at + 1}: 0x{byte:02x} is not valid UTF-8, though the rest of the file "
            "is UTF-8 (a damaged or pasted character): correct that line, or save the whole file as UTF-8"
        )
    return "cp1252"


def _holds_utf8_character(path: Path) -> bool:
    """Whether the file holds a multi-byte UTF-8 character: then a byte that is not UTF-8 is damage, not cp1252.
    Decoded in C, 0.4 s for 160 MB (a regular expression over the bytes took 3 s)."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    return any(_DECODED_UTF8_CHARACTER.search(decoder.decode(chunk)) for chunk in _chunks(path))


@dataclass(frozen=True)
class _Lines:
    crlf: int
    bare_lf: int
    blank: list[int]  # 1-based numbers of the empty lines: DuckDB skips them, a person counts them


def _scan_lines(path: Path) -> _Lines:
    """Line endings and empty lines of a UTF-8 file, in one pass over its bytes."""
    return _scan_chunks(_chunks(path))


def _scan_chunks(chunks: Iterable[bytes] | Iterable[str]) -> _Lines:
    """Line endings and empty lines of a text given in chunks (bytes or str), as if it were one piece: a chunk
    boundary may fall inside a CRLF or between the two line ends around an empty line."""
    crlf = bare_lf = line = 0
    blank: list[int] = []
    before = carried = None  # the last character counted (a blank line follows a LF); a CR whose LF may follow
    for chunk in chunks:
        if before is None:
            nl, cr = ("\n", "\r") if isinstance(chunk, str) else (b"\n", b"\r")
            empty_line = _BLANK_TEXT if isinstance(chunk, str) else _BLANK_LINE
            before = carried = chunk[:0]
        body = carried + chunk
        body, carried = (body[:-1], body[-1:]) if body.endswith(cr) else (body, body[:0])
        # each count once, and none that cannot be there (no CRLF without a CR): 0.4 s for 160 MB instead of 0.8
        lf = body.count(nl)
        cr_lf = body.count(cr + nl) if cr in body else 0
        crlf += cr_lf
        bare_lf += lf - cr_lf
        window = before + body
        if nl + nl in window or (cr_lf and nl + cr + nl in window):  # rare: the regular expression only where one is
            for match in empty_line.finditer(window, len(before)):
                blank.append(line + window.count(nl, len(before), match.start()) + 1)
        line += lf
        before = window[-1:]
    return _Lines(crlf, bare_lf, blank)


def _utf8_copy(path: Path, encoding: str, workdir: Path) -> tuple[Path, _Lines]:
    """A UTF-8 copy with one kind of line ending, and its lines, counted as it is written: DuckDB reads UTF-8 only
    (without the encodings extension) and stops at a file that mixes CRLF and LF."""
    target = workdir / (path.stem + ".utf8.csv")
    try:
        with (
            path.open("r", encoding=encoding, newline=None) as src,
            target.open("w", encoding="utf-8", newline="\n") as dst,
        ):

            def written() -> Iterator[str]:
                while text := src.read(CHUNK):
                    dst.write(text)
                    yield text

            lines = _scan_chunks(written())
    except UnicodeDecodeError:  # where exactly, in bytes and lines (a second pass, for a file that is refused)
        raise _not_valid(path, encoding, *(_invalid_at(path, encoding) or (0, 0))) from None
    return target, lines


def _header(path: Path, delimiter: str) -> list[str]:
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        try:
            first = next(csv.reader(io.StringIO(fh.readline()), delimiter=delimiter), [])
        except csv.Error as exc:
            raise Unreadable(f"line 1 (the header) cannot be read: {exc}") from None
    header = [normalised(cell) for cell in first]
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


_CSV_ERROR_LINE = re.compile(r"CSV Error on Line: (\d+)")
# what DuckDB says is wrong with a line: only these phrases are passed on (the message also holds the line's text,
# which may span lines of its own and hold a client id)
_CSV_PROBLEMS = re.compile(
    r"Expected Number of Columns: \d+ Found: \d+|Value with unterminated quote|unterminated quotes?"
    r"|Maximum line size of \d+ bytes exceeded|Invalid unicode \(byte sequence mismatch\)",
    re.I,
)


def _csv_error(exc: duckdb.Error, physical_line) -> str:
    """DuckDB's CSV error as one line: the line an editor shows (``physical_line`` of DuckDB's line number) and what
    is wrong with it in DuckDB's own words, never the line's text (it may hold a client id)."""
    text = str(exc)
    match = _CSV_ERROR_LINE.search(text)
    if not match:
        return "cannot be read as CSV: " + without_values(text.splitlines()[0] if text else type(exc).__name__)
    fixes = text.find("\nPossible fixes")
    problems = _CSV_PROBLEMS.findall(text[: fixes if fixes >= 0 else len(text)])
    problem = problems[-1] if problems else "malformed line"
    return f"line {physical_line(int(match.group(1)))}: {problem}"


def _line_starts(path: Path, delimiter: str) -> list[tuple[int, bool]]:
    """(the line an editor shows, whether it starts a record) for each line as DuckDB counts them (the header, the
    records and the empty lines; a line break inside a quoted value starts no line of DuckDB's), read by Python's csv
    module, which counts the lines it reads. For the files that need it only: a quoted value with a line break."""
    starts = []
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        before = 0
        try:
            for record in reader:
                starts.append((before + 1, bool(record)))  # an empty line is no record (DuckDB skips it too)
                before = reader.line_num
        except csv.Error:
            starts.append((before + 1, True))  # DuckDB names what is wrong there
    return starts


def _record_starts(path: Path, delimiter: str) -> list[int]:
    """The line an editor shows for the start of each data record (after the header)."""
    return [line for line, record in _line_starts(path, delimiter) if record][1:]


def _spans_lines(lines: _Lines, records: int) -> bool:
    """Whether the file has more line breaks than its header, records and empty lines account for: a quoted value
    holds a line break, and each record's line must be counted."""
    return lines.crlf + lines.bare_lf > records + len(lines.blank) + 1


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path, source: Source) -> FileCells:
    encoding = _detect_encoding(path, source.encoding)
    starts = None
    with temp_folder("read") as tmp:
        if encoding == "utf-8":
            readable, lines = path, _scan_lines(path)
            if lines.crlf and lines.bare_lf:  # only a file read as is can mix them: a copy has LF only
                readable, lines = _utf8_copy(path, encoding, Path(tmp))
        else:
            readable, lines = _utf8_copy(path, encoding, Path(tmp))
        header = _header(readable, source.delimiter)
        columns = {f"c{i}": "VARCHAR" for i in range(len(header))}
        try:
            con.execute(
                "create or replace temp table _file as select * from read_csv(?, header = true, "
                "delim = ?, quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
                "auto_detect = false, max_line_size = 16777216, columns = ?)",
                [str(readable), source.delimiter, columns],
            )
        except duckdb.Error as exc:  # DuckDB counts every line but the breaks inside quoted values
            quoted = any(b'"' in chunk for chunk in _chunks(readable))
            duck = [line for line, _ in _line_starts(readable, source.delimiter)] if quoted else []
            line = lambda n: duck[n - 1] if 0 < n <= len(duck) else n  # noqa: E731
            raise Unreadable(_csv_error(exc, line)) from None
        records = con.execute("select count(*) from _file").fetchall()[0][0]
        if _spans_lines(lines, records):
            starts = _record_starts(readable, source.delimiter)
            if len(starts) != records:  # read otherwise than DuckDB did: count as before
                starts = None
    # rowid follows the file's order; the header is line 1, and the lines DuckDB does not see as records (empty
    # lines, the further lines of a record with a quoted line break) still count
    if starts is not None:
        shifts, last = [], 0
        for k, line in enumerate(starts):
            if line - (k + 2) != last:
                last = line - (k + 2)
                shifts.append((k, last))
    else:
        shifts = [(b - 2 - i, i + 1) for i, b in enumerate(lines.blank)]
    shift = "0"
    if shifts:
        con.execute("create or replace temp table _shift (from_row bigint, shift bigint)")
        con.executemany("insert into _shift values (?, ?)", shifts)
        shift = "coalesce((select max(shift) from _shift where from_row <= f.rowid), 0)"
    # a view: the file's cells are read once, into _text (validate.py), and not copied on the way
    con.execute(f"create or replace temp view _cells as select rowid + 2 + {shift} as _row, * from _file f")
    return FileCells(header)


def release_cells(con: duckdb.DuckDBPyConnection) -> None:
    """Drop ``_cells`` and the table of the file it shows, once read: a national export is gigabytes of text."""
    con.execute("drop view if exists _cells")
    con.execute("drop table if exists _file")
    con.execute("drop table if exists _xlsx")


# --- XLSX ------------------------------------------------------------------------------------

WORKBOOK_READER = Path(__file__).with_name("workbook.py")
WORKBOOK_CPU_SECONDS = 300  # a workbook that takes longer to read is no form or export


def _read_xlsx(con: duckdb.DuckDBPyConnection, path: Path, source: Source, fd: int | None = None) -> FileCells:
    """The sheet's cells, read by workbook.py in a child process with bounded memory and time (a workbook can declare
    billions of cells or unpack to gigabytes, and the Excel reader then aborts its process): a reader that stops
    quarantines the file, never the night."""
    from pipelines.warehouse import memory_bytes, memory_limit

    request = {
        "path": str(path),
        "sheet": source.sheet,
        "header_row": source.header_row,
        "memory_bytes": memory_bytes(memory_limit()),
        "cpu_seconds": WORKBOOK_CPU_SECONDS,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-I", str(WORKBOOK_READER)],
            input=pickle.dumps(request),
            capture_output=True,
            pass_fds=(fd,) if fd is not None else (),
            timeout=2 * WORKBOOK_CPU_SECONDS,
            start_new_session=True,  # a Ctrl-C on the terminal reaches the refresh, which ends the reader
        )
    except subprocess.TimeoutExpired:
        raise Unreadable(f"the workbook could not be read in {2 * WORKBOOK_CPU_SECONDS} s") from None
    try:
        kind, value = pickle.loads(done.stdout)  # noqa: S301 - our own child process
    except Exception:
        raise Unreadable(_reader_stopped(done.returncode)) from None
    if kind == "unreadable":
        raise Unreadable(value)
    return _cells_table(con, value)


def _reader_stopped(code: int) -> str:
    how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit {code}"
    return (
        f"the Excel reader stopped on this workbook ({how}) before it had read it: the workbook needs more memory or "
        "time than a workbook may take (CARE_OUTCOMES_MEMORY_LIMIT), or it is damaged. A stray cell far below or right "
        "of the data does this: delete the empty rows and columns after the data, or save the data as CSV"
    )


def _cells_table(con: duckdb.DuckDBPyConnection, read: dict) -> FileCells:
    first_row, columns = read["first_row"], read["columns"]
    rows = len(columns[0]) if columns else 0
    table = pa.table(
        {"_row": pa.array(range(first_row, first_row + rows), pa.int64())}
        | {f"c{i}": pa.array(column, pa.string()) for i, column in enumerate(columns)}
    )
    con.register("_xlsx_arrow", table)
    con.execute("create or replace temp table _xlsx as select * from _xlsx_arrow")
    con.unregister("_xlsx_arrow")
    con.execute("create or replace temp view _cells as select * from _xlsx")
    return FileCells([normalised(h) for h in read["header"]], sheet=read["sheet"])
