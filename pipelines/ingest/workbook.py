"""Read one sheet of a workbook into text cells, bounded, in a process of its own.

A workbook is a zip of XML parts: a 2 KB file can declare a sheet of 17 billion cells (one stray cell at XFD1048576)
or shared strings that expand to gigabytes, and the Excel reader (python-calamine, in Rust) aborts the whole process
when an allocation fails. So ``read.py`` runs this file as a child process (``python -I workbook.py``), which:

- checks what the workbook declares before the reader sees it: the unpacked size of its parts (``MAX_UNPACKED``) and
  each candidate sheet's dimensions (``MAX_CELLS``);
- limits its own address space (``RLIMIT_AS``) and CPU time, so a part that lies about its size ends this process,
  not the night: the parent then quarantines the file;
- reads the sheet with python-calamine, refuses a cell longer than Excel itself allows (32,767 characters), and
  writes the header and the text of every cell back as one pickle on stdout.

It imports nothing of care-outcomes (it runs without the package on its path) and nothing but the standard library
and python-calamine: it starts in a few hundredths of a second.

Request (a pickle on stdin): {"path", "sheet", "header_row", "memory_bytes", "cpu_seconds"}. Answer: ("cells", {...})
or ("unreadable", message).
"""

from __future__ import annotations

import datetime as dt
import io
import pickle
import re
import resource
import sys
import zipfile
from pathlib import PurePosixPath
from xml.etree import ElementTree

# A cell that Excel could not give a value for starts with this mark, followed by what is wrong;
# validate.py names such a cell instead of reading it as text or as empty.
CELL_FAULT = "\x00"
MAX_UNPACKED = 256 << 20  # bytes of all the workbook's parts together, unpacked: forms and exports are far smaller
MAX_CELLS = 20_000_000  # cells of the sheet's rectangle (rows x columns): a 200,000-row export of 100 columns
EXCEL_MAX_CELL_CHARS = 32_767  # the most Excel itself puts in a cell

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')


class Unreadable(Exception):
    """The workbook cannot be read as asked; the message is for a person."""


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: how Excel names a column."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


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


# --- what the workbook declares, checked before the reader sees it --------------------------


def _open_zip(path: str) -> zipfile.ZipFile | None:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None  # not an OOXML workbook (an .xls, or damaged): the reader says what it is


def check_unpacked(archive: zipfile.ZipFile) -> None:
    unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_UNPACKED:
        raise Unreadable(
            f"the workbook unpacks to {unpacked / (1 << 20):,.0f} MB, more than the {MAX_UNPACKED >> 20} MB a workbook "
            "may take (a forms or export workbook is far smaller); save the data as CSV, or remove what is not data"
        )


def _sheet_part(archive: zipfile.ZipFile, sheet: str) -> str | None:
    """The part of the workbook that holds the named sheet."""
    try:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError, zipfile.BadZipFile):
        return None
    targets = {r.get("Id"): r.get("Target") for r in rels}
    for element in workbook.iter(f"{_NS}sheet"):
        if element.get("name") == sheet:
            target = targets.get(element.get(f"{_REL_NS}id"), "") or ""
            return str(PurePosixPath(target.lstrip("/"))) if target.startswith("/") else f"xl/{target}"
    return None


def check_dimensions(archive: zipfile.ZipFile | None, sheet: str) -> None:
    """The sheet's declared rectangle (``<dimension ref="A1:XFD1048576"/>``, near the start of its part) holds at most
    MAX_CELLS cells: the reader makes room for every cell of it at once."""
    part = _sheet_part(archive, sheet) if archive is not None else None
    if part is None or part not in archive.namelist():
        return
    with archive.open(part) as fh:
        head = fh.read(1 << 16)
    match = _DIMENSION.search(head)
    if not match or not match.group(3):
        return
    first_col, first_row = _column_index(match.group(1).decode()), int(match.group(2))
    last_col, last_row = _column_index(match.group(3).decode()), int(match.group(4))
    cells = (abs(last_row - first_row) + 1) * (abs(last_col - first_col) + 1)
    if cells > MAX_CELLS:
        span = f"{match.group(1).decode()}{first_row}:{match.group(3).decode()}{last_row}"
        raise Unreadable(
            f"sheet {sheet!r} spans {span} ({cells:,} cells), more than the {MAX_CELLS:,} a sheet may have: a stray "
            "cell far from the data? Delete the empty rows and columns after the data (or save the data as CSV)"
        )


def cell_faults(archive: zipfile.ZipFile | None, sheet: str) -> dict[tuple[int, int], str]:
    """(row, column) -> what is wrong, for cells holding an Excel error (#DIV/0!, #N/A, ...) or a formula that was
    never calculated (written by a program, not saved by Excel): calamine reads both as empty."""
    part = _sheet_part(archive, sheet) if archive is not None else None
    if part is None or part not in archive.namelist():
        return {}
    try:
        with archive.open(part) as fh:
            xml = fh.read()
        if b"<f" not in xml and b't="e"' not in xml:
            return {}
        faults = {}
        with io.BytesIO(xml) as fh:
            for _, cell in ElementTree.iterparse(fh):
                if cell.tag != f"{_NS}c":
                    continue
                value, formula = cell.find(f"{_NS}v"), cell.find(f"{_NS}f")
                fault = None
                if cell.get("t") == "e":
                    fault = f"an Excel error ({value.text if value is not None else '#ERROR'})"
                elif formula is not None and (value is None or value.text is None):
                    fault = "a formula without a calculated value (open the file in Excel and save it)"
                match = _CELL_REF.fullmatch(cell.get("r") or "")
                if fault and match:
                    faults[(int(match.group(2)), _column_index(match.group(1)))] = fault
                cell.clear()
        return faults
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError):
        return {}


# --- reading --------------------------------------------------------------------------------


def _rows(workbook, archive, name: str) -> list[list]:
    check_dimensions(archive, name)
    try:
        return workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except Exception as exc:  # calamine raises several private error types
        raise Unreadable(f"sheet {name!r} cannot be read ({_one_line(exc)})") from None


def _has_data(workbook, archive, name: str) -> bool:
    return any(v not in (None, "") for row in _rows(workbook, archive, name) for v in row)


def choose_sheet(workbook, archive, wanted: str | None) -> str:
    """The sheet the source YAML names, else the only visible sheet with data."""
    names = workbook.sheet_names
    if wanted is not None:
        if wanted not in names:
            raise Unreadable(f"the workbook has no sheet named {wanted!r} (sheets: {', '.join(names)})")
        return wanted
    from python_calamine import SheetTypeEnum, SheetVisibleEnum

    visible = [
        m.name
        for m in workbook.sheets_metadata
        if m.visible == SheetVisibleEnum.Visible and m.typ == SheetTypeEnum.WorkSheet
    ]
    if len(visible) == 1:
        return visible[0]
    with_data = [name for name in visible if _has_data(workbook, archive, name)]
    if len(with_data) > 1:
        raise Unreadable(
            f"the workbook has {len(with_data)} visible sheets with data ({', '.join(with_data)}): "
            "name the one to read with `sheet:` in the source YAML, or remove the others"
        )
    if not with_data:
        raise Unreadable(f"the workbook has no visible sheet with data (sheets: {', '.join(names)})")
    return with_data[0]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def read_sheet(path: str, sheet: str | None, header_row: int) -> dict:
    """{"sheet", "header", "first_row", "columns"}: the header cells as text, and per header column the text of each
    cell below it (None where empty, CELL_FAULT + what is wrong where Excel has no value)."""
    from python_calamine import CalamineWorkbook

    archive = _open_zip(path)
    if archive is not None:
        check_unpacked(archive)
    try:
        workbook = CalamineWorkbook.from_path(path)
    except Exception as exc:  # calamine raises several private error types
        raise Unreadable(f"not a readable Excel workbook ({_one_line(exc)})") from None
    name = choose_sheet(workbook, archive, sheet)
    rows = _rows(workbook, archive, name)
    if len(rows) < header_row:
        raise Unreadable(f"sheet {name!r} has no header row (expected on row {header_row})")
    header = [(_cell_text(v) or "") for v in rows[header_row - 1]]
    while header and not header[-1].strip():
        header.pop()
    if not any(h.strip() for h in header):
        raise Unreadable(f"sheet {name!r} row {header_row} holds no column names")
    body = rows[header_row:]
    width = len(header)
    first_row = header_row + 1  # to_python(skip_empty_area=False) starts at A1
    columns = [[_cell_text(row[i]) if i < len(row) else None for row in body] for i in range(width)]
    for i, column in enumerate([header, *columns]):
        for j, text in enumerate(column):
            if text is not None and len(text) > EXCEL_MAX_CELL_CHARS:
                row = header_row if i == 0 else first_row + j
                col = j if i == 0 else i - 1
                raise Unreadable(
                    f"cell {name}!{column_letter(col)}{row} holds {len(text):,} characters, more than Excel allows in "
                    f"a cell ({EXCEL_MAX_CELL_CHARS:,})"
                )
    for (row, col), fault in cell_faults(archive, name).items():
        if col < width and 0 <= row - first_row < len(body):
            columns[col][row - first_row] = CELL_FAULT + fault
    return {"sheet": name, "header": header, "first_row": first_row, "columns": columns}


def _limit(memory_bytes: int | None, cpu_seconds: int | None) -> None:
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))


def main() -> int:
    request = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from the process that started this one
    _limit(request.get("memory_bytes"), request.get("cpu_seconds"))
    try:
        answer = ("cells", read_sheet(request["path"], request.get("sheet"), request.get("header_row", 1)))
    except Unreadable as exc:
        answer = ("unreadable", str(exc))
    except MemoryError:
        answer = ("unreadable", "the workbook needs more memory than a workbook may take")
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
