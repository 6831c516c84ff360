"""Check the text cells of one file against its contract, in SQL, and build the typed rows.

Input: temp table ``_cells`` (from read.py). Output: temp table ``_typed`` with the contract's
columns, typed, plus ``_row``; or a list of problems, each naming the line or cell, column, value and rule.
Whatever passes fits the marts: finite numbers within the contract's bounds, dates with four-digit years
in a plausible range.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.ingest import screen
from pipelines.ingest.read import CELL_FAULT, FileCells, column_letter, release_cells
from pipelines.ingest.registry import Contract, ContractColumn, ContractRule, Source
from pipelines.warehouse import PROJECT_ROOT, lit, q, shown

MAX_REPORTED = 5
SHOWN_CHARS = 80  # of a value or header cell quoted in a reason
# every date must lie in these years: a two-digit year ('21') parses as the year 21, and nothing before 1900
# or after 2099 belongs in these figures
FIRST_YEAR, LAST_YEAR = 1900, 2099


@dataclass(frozen=True)
class Problem:
    row: int | None
    column: str | None
    value: str | None
    rule: str
    place: str | None = None  # 'line 7' (CSV) or 'cell Blad1!C7' (XLSX); else 'row <row>'

    def __str__(self) -> str:
        where = [self.place or f"row {self.row}"] if self.row is not None else []
        if self.column:
            where.append(f"column '{shown(self.column, SHOWN_CHARS)}'")
        if self.value is not None:
            where.append(f"value '{shown(self.value, SHOWN_CHARS)}'")
        return (", ".join(where) + ": " if where else "") + shown(self.rule)


@dataclass(frozen=True)
class Places:
    """Names a row and column the way a person finds it: a line of a CSV file, a cell of a sheet."""

    sheet: str | None = None
    positions: dict[str, int] | None = None  # contract column -> position in the file
    header_row: int = 1

    def header_cell(self, position: int | None = None) -> str:
        if self.sheet is None:
            return "line 1"
        if position is None:
            return f"{self.sheet} row {self.header_row}"
        return f"cell {self.sheet}!{column_letter(position)}{self.header_row}"

    @property
    def rows(self) -> str:
        return "rows" if self.sheet else "lines"

    def place(self, row: int, column: str | None = None) -> str:
        if self.sheet is None:
            return f"line {row}"
        position = (self.positions or {}).get(column or "")
        return (
            f"cell {self.sheet}!{column_letter(position)}{row}" if position is not None else f"{self.sheet} row {row}"
        )


class Rejected(Exception):
    """The file breaks its contract; ``problems`` says where and how."""

    def __init__(self, problems: list[Problem], total: int | None = None):
        self.problems = problems
        self.total = total if total is not None else len(problems)
        super().__init__(self.summary())

    def summary(self) -> str:
        shown = "; ".join(str(p) for p in self.problems[:MAX_REPORTED])
        more = self.total - min(len(self.problems), MAX_REPORTED)
        return shown + (f"; and {more} more problem(s)" if more > 0 else "")


def _norm(header: str) -> str:
    return " ".join(screen.normalised(header).split()).casefold()


def _header_label(cell: str, position: int, contract: Contract) -> tuple[str, str]:
    """(label, note): a header cell as a reason may quote it; not at all where it could be a person's data (a file
    without its header line has a data line there: a client id, an e-mail address), then by its position."""
    if screen.looks_personal(cell) or (contract.pseudonymise and re.search(r"[0-9]", cell)):
        return f"#{position + 1}", " (its text is not shown: it could be personal data; is the header line missing?)"
    return cell, ""


def file_name_values(file_name: str, source: Source) -> dict[str, str]:
    """Contract values the source takes from the file name (e.g. programme and assessment date of a form)."""
    if source.file_name_pattern is None:
        return {}
    match = re.fullmatch(source.file_name_pattern, file_name)
    if match is None:
        raise Rejected([Problem(None, None, file_name, f"the file name does not match {source.file_name_pattern!r}")])
    return {k: v for k, v in match.groupdict().items() if v is not None}


def map_header(
    header: list[str],
    contract: Contract,
    source: Source,
    constants: dict[str, str] | None = None,
    places: Places | None = None,
) -> dict[str, int]:
    """Contract column -> position in the file; Rejected when a column is missing, unknown or doubled."""
    constants = constants or {}
    places = places or Places()
    row = places.header_row
    lookup = {_norm(k): v for k, v in source.columns.items()}
    lookup.update({_norm(c.name): c.name for c in contract.columns if _norm(c.name) not in lookup})
    ignored = {_norm(h) for h in source.ignore_columns}
    positions: dict[str, int] = {}
    problems: list[Problem] = []
    expected = ", ".join(source.columns or [c.name for c in contract.columns])
    for i, cell in enumerate(header):
        if not cell:
            problems.append(Problem(row, f"#{i + 1}", None, "the header cell is empty", places.header_cell(i)))
            continue
        column = lookup.get(_norm(cell))
        label, note = _header_label(cell, i, contract)
        if column is None:
            if _norm(cell) not in ignored:
                problems.append(
                    Problem(row, label, None, f"unknown column{note} (expected: {expected})", places.header_cell(i))
                )
        elif column in positions:
            problems.append(Problem(row, label, None, f"a second column for '{column}'{note}", places.header_cell(i)))
        else:
            positions[column] = i
    for column in contract.columns:
        if column.name not in positions and column.name not in constants and not column.optional_column:
            label = next((k for k, v in source.columns.items() if v == column.name), column.name)
            problems.append(Problem(row, label, None, "missing column", places.header_cell()))
    if problems:
        raise Rejected(problems)
    return positions


def _human_date_format(fmt: str) -> str:
    return fmt.replace("%d", "dd").replace("%m", "mm").replace("%Y", "yyyy").replace("%H", "hh").replace("%M", "mi")


def _typed_expr(column: ContractColumn, text: str, source: Source) -> str:
    number = f"replace({text}, ',', '.')" if source.decimal == "," else text
    as_double = f"try_cast({number} as double)"
    if column.type == "integer":
        # beyond BIGINT's range a whole number is kept at its edge, so the contract's maximum names it
        return (
            f"case when isfinite({as_double}) and {as_double} = floor({as_double}) "
            f"then cast(greatest(least({as_double}, 9e18), -9e18) as bigint) end"
        )
    if column.type == "decimal":
        return f"case when isfinite({as_double}) then {as_double} end"  # NaN and infinity are no numbers
    if column.type == "date":
        return (
            f"cast(coalesce(try_strptime({text}, {lit(source.date_format)}), try_strptime({text}, '%Y-%m-%d')) as date)"
        )
    if column.type == "timestamp":
        return f"coalesce(try_cast({text} as timestamp), try_strptime({text}, {lit(source.date_format)}))"
    return text


def _type_rule(column: ContractColumn, source: Source) -> str:
    decimal = " with a ',' decimal mark" if source.decimal == "," else ""
    return {
        "integer": "not a whole number",
        "decimal": f"not a number{decimal}",
        "date": f"not a date (expected {_human_date_format(source.date_format)})",
        "timestamp": "not a date or timestamp "
        f"(expected yyyy-mm-dd [hh:mi:ss] or {_human_date_format(source.date_format)})",
    }.get(column.type, "not valid text")


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


# what else decides how a line becomes a stored row: the code that reads, checks, types and pseudonymises it
_CODE = ("read.py", "validate.py", "pseudonymise.py", "load.py")


def line_identity(
    contract: Contract, source: Source, positions: dict[str, int], constants: dict[str, str], salt: str = ""
) -> str:
    """A digest of everything that decides which row a line of this file becomes: the contract, the source's
    settings, where each column is in the file, the values taken from the file name, the reference CSVs, the code
    and DuckDB version, and ``salt`` (the pseudonymisation key's fingerprint). Two lines with the same cells under
    the same identity become the same row."""
    digest = hashlib.sha256()
    for part in (
        contract.model_dump_json(),
        source.model_dump_json(exclude={"path", "description"}),
        json.dumps(positions, sort_keys=True),
        json.dumps(constants, sort_keys=True),
        _files_digest(tuple(sorted(contract.references.values()))),
        salt,
    ):
        digest.update(part.encode() + b"\x1e")
    return digest.hexdigest()


@functools.cache
def _files_digest(references: tuple[str, ...]) -> str:
    """The code that makes rows of lines, DuckDB's version and the reference CSVs, read once per process."""
    digest = hashlib.sha256(duckdb.__version__.encode())
    for path in [Path(__file__).parent / name for name in _CODE] + [PROJECT_ROOT / r for r in references]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def line_hash(identity: str, positions: dict[str, int]) -> str:
    """SQL over _cells: the 128-bit hash of a line's cells as read (the columns the contract takes, in its order),
    under the identity of the rules that make it a row."""
    cells = ", ".join(f"coalesce(c{i}, chr(0))" for i in positions.values())
    return f"md5_number(concat_ws(chr(31), {lit(identity)}{', ' if cells else ''}{cells}))"


def skip_known_lines(con: duckdb.DuckDBPyConnection, contract: Contract, line: str, known: str) -> int:
    """Hash every line of ``_cells`` into ``_lines`` (_row, _line, skip) and show in ``_skip`` (_row, _line) those
    that are a stored row again: their hash is the ``_line_hash`` of a stored row that is still the latest version
    of its key (``known``: the raw table). Returns how many; they are not typed, checked or stored again. Where a key
    may never repeat, a line the file holds twice is read (its checks refuse it)."""
    twice = " and count(*) over (partition by _line) = 1" if contract.key_repeats == "never" else ""
    con.execute(
        "create or replace temp table _lines as select _row, _line, "
        f"_line in (select _line_hash from {known} where _line_hash is not null){twice} as skip "
        f"from (select _row, {line} as _line from _cells)"
    )
    con.execute("create or replace temp view _skip as select _row, _line from _lines where skip")
    return con.execute("select count(*) from _skip").fetchall()[0][0]


def build_typed(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    source: Source,
    positions: dict[str, int],
    constants: dict[str, str] | None = None,
    line: str = "null",
    skipped: bool = False,
) -> None:
    """Create ``_text`` (trimmed, value-mapped text) and ``_typed`` (cast) from ``_cells``, each row with its
    ``_line`` hash (the SQL ``line``), leaving out the rows in ``_skip`` when ``skipped``."""
    constants = constants or {}
    empty = ", ".join(lit(v.casefold()) for v in ("", *source.null_values))
    # two steps in one statement: each cell trimmed and emptied once (s), then the labels of the source YAML mapped
    # to codes. Projections and filters only: _text keeps the file's order (DuckDB keeps it for those, not for joins)
    cells, texts = [], []
    for column in contract.columns:
        name = q(column.name)
        if column.name in constants:
            cells.append(f"{lit(constants[column.name])} as {name}")
        elif column.name not in positions:
            cells.append(f"cast(null as varchar) as {name}")
        else:
            raw = screen.normalised_sql(f"c{positions[column.name]}")
            cells.append(f"case when lower({raw}) in ({empty}) then null else {raw} end as {name}")
        labels = {}  # normalised label -> code, the first of equal labels winning
        for label, code in source.values.get(column.name, {}).items():
            labels.setdefault(_norm(label), code)
        if labels:
            cases = " ".join(f"when {lit(label)} then {lit(code)}" for label, code in labels.items())
            texts.append(f"case lower(s.{name}) {cases} else s.{name} end as {name}")
        else:
            texts.append(f"s.{name}")
    used = [f"c{i}" for i in positions.values()]
    not_blank = " or ".join(f"nullif(trim({c}), '') is not null" for c in used) or "true"
    # without skipped lines, projections and filters only: _text keeps the file's order (a join would not; the rows
    # of a file with skipped lines are stored in the order of _row)
    rows = (
        "(select * from _cells semi join (select _row from _lines where not skip) using (_row)) where"
        if skipped
        else "_cells where"
    )
    con.execute(
        f"create or replace temp table _text as select s._row, {', '.join(texts)}, s._line "
        f"from (select _row, {', '.join(cells)}, {line} as _line from {rows} ({not_blank})) s"
    )
    release_cells(con)
    typed = ", ".join(f"{_typed_expr(c, 't.' + q(c.name), source)} as {q(c.name)}" for c in contract.columns)
    con.execute(f"create or replace temp table _typed as select t._row, {typed}, t._line from _text t")


def _is_fault(text: str) -> str:
    """SQL: the cell holds an Excel error or a formula without a value (marked by read.py)."""
    return f"starts_with({text}, chr({ord(CELL_FAULT)}))"


def _checks(contract: Contract, source: Source) -> list[tuple[str, str, str, bool]]:
    """(column label, SQL condition that marks a bad row over t=_text and y=_typed, rule text as SQL, whether the
    cell's value may be quoted), most telling first: a cell gets the first rule it breaks."""
    checks = []
    for c in contract.columns:
        t, y = f"t.{q(c.name)}", f"y.{q(c.name)}"
        # an Excel error or a formula without a value: read.py marked the cell with what is wrong
        checks.append((c.name, _is_fault(t), f"substr({t}, 2)", False))
        if c.max_length is not None:
            checks.append(
                (
                    c.name,
                    f"length({t}) > {c.max_length}",
                    f"'holds ' || length({t}) || ' characters, more than the {c.max_length:,} this column may have'",
                    False,
                )
            )
        if c.type == "text" and c.name not in contract.pseudonymise:
            found = screen.personal_sql(t)
            checks.append(
                (
                    c.name,
                    f"({found}) is not null",
                    f"'holds what looks like ' || ({found}) || ', personal data that has no place in this column: "
                    "remove it (the value is not shown)'",
                    False,
                )
            )
        if c.required:
            checks.append((c.name, f"{t} is null", lit("empty, but required"), True))
        if c.type != "text":
            checks.append((c.name, f"{t} is not null and {y} is null", lit(_type_rule(c, source)), True))
        if c.type in ("date", "timestamp"):
            year = f"extract(year from {y})"
            checks.append(
                (
                    c.name,
                    f"{year} < 1000",
                    lit("the year has fewer than four digits: write it in full (2021, not 21)"),
                    True,
                )
            )
            checks.append(
                (
                    c.name,
                    f"{year} not between {FIRST_YEAR} and {LAST_YEAR}",
                    lit(f"lies outside {FIRST_YEAR}-{LAST_YEAR}"),
                    True,
                )
            )
        if c.not_after_current_year:
            checks.append((c.name, f"{y} > extract(year from current_date)", lit("lies in the future"), True))
        if c.min is not None:
            checks.append((c.name, f"{y} < {c.min}", lit(f"must be at least {_fmt(c.min)}"), True))
        if c.max is not None:
            checks.append((c.name, f"{y} > {c.max}", lit(f"must be at most {_fmt(c.max)}"), True))
        if c.values:
            accepted = ", ".join(lit(v) for v in c.values)
            expected = f"unknown value (expected one of: {', '.join(c.values)}, or a label mapped in the source YAML)"
            checks.append((c.name, f"{y} not in ({accepted})", lit(expected), True))
    return checks


def _shown(column: str, contract: Contract, table: str = "") -> str:
    """A column's value as text for a problem message; pseudonymised columns (client ids) never shown."""
    return "'(hidden)'" if column in contract.pseudonymise else f"cast({table}{q(column)} as varchar)"


def _rule_columns(contract: Contract, check: str) -> list[str]:
    return [c.name for c in contract.columns if re.search(rf"\b{re.escape(c.name)}\b", check)]


def _breaks(contract: Contract, rule: ContractRule) -> str:
    """SQL over y=_typed: the row breaks the rule (a rule over an empty cell is not judged)."""
    known = " and ".join(f"y.{q(c)} is not null" for c in _rule_columns(contract, rule.check)) or "true"
    return f"{known} and not ({rule.check})"


def find_problems(
    con: duckdb.DuckDBPyConnection, contract: Contract, source: Source, places: Places | None = None
) -> tuple[list[Problem], int]:
    """Every broken cell and rule of the file (one problem per cell: the first rule it breaks), the first few in
    row order, and how many there are."""
    places = places or Places()
    checks = _checks(contract, source)
    if not _any_problem(con, contract, checks):  # most files: one cheap query instead of the whole union below
        return [], 0
    parts = []
    for priority, (column, condition, rule, quoted) in enumerate(checks):
        # a pseudonymised value (client id) must never reach audit.file_loads: the row number finds it; a faulty Excel
        # cell has no value to show, and a value too long or holding personal data is not quoted
        value = f"case when t.{q(column)} is not null then {_shown(column, contract, 't.')} end" if quoted else "null"
        parts.append(
            f"select t._row as row_no, {lit(column)} as col, {value} as val, {rule} as rule, {priority} as priority "
            f"from _text t join _typed y using (_row) where {condition}"
        )
    for rule in contract.rules:
        columns = _rule_columns(contract, rule.check)
        values = " || ', ' || ".join(f"'{c}=' || {_shown(c, contract, 'y.')}" for c in columns) or "''"
        parts.append(
            f"select y._row, {lit(', '.join(columns))}, {values}, "
            f"{lit('breaks rule: ' + rule.name + ' (' + rule.check + ')')}, 1000 "
            f"from _typed y where {_breaks(contract, rule)}"
        )
    key = ", ".join(q(k) for k in contract.key)
    others = ", ".join(q(c.name) for c in contract.columns)
    if contract.key_repeats == "never":
        repeated, what = "count(*) > 1", "repeat the same key"
    else:
        repeated, what = (
            f"count(distinct md5(cast(row({others}) as varchar))) > 1",
            "have the same key but different values",
        )
    repeats = _repeated_keys(contract)
    parts.append(
        f"select min(_row), {lit(', '.join(contract.key))}, "
        f"concat_ws(', ', {', '.join(_shown(k, contract) for k in contract.key)}), "
        f"{lit(places.rows + ' ')} || string_agg(cast(_row as varchar), ', ' order by _row) || {lit(' ' + what)}, "
        f"2000 from _typed join ({repeats}) using ({key}) group by {key} having {repeated}"
    )
    first_per_cell = "qualify row_number() over (partition by row_no, col order by priority) = 1"
    union = f"select * from ({' union all '.join(parts)}) {first_per_cell}"
    total = con.execute(f"select count(*) from ({union})").fetchall()[0][0]
    if not total:
        return [], 0
    rows = con.execute(
        f"select row_no, col, {_unless_pseudonym('val', contract)}, rule "
        f"from ({union}) order by row_no, priority, col limit {MAX_REPORTED}"
    ).fetchall()
    return [
        Problem(r[0], r[1], r[2], r[3], places.place(r[0], r[1]) if r[0] is not None else None) for r in rows
    ], total


def _repeated_keys(contract: Contract) -> str:
    """SQL: the keys held by more than one row of _typed (a cheap count; what those rows hold is looked at next)."""
    key = ", ".join(q(k) for k in contract.key)
    return (
        f"select {key} from _typed where {' and '.join(q(k) + ' is not null' for k in contract.key)} "
        f"group by {key} having count(*) > 1"
    )


def _any_problem(con: duckdb.DuckDBPyConnection, contract: Contract, checks: list[tuple[str, str, str, bool]]) -> bool:
    """Whether any cell breaks a check, any row a rule, or any key repeats: one pass over the rows each, where
    telling the problems apart costs a query of dozens of parts."""
    cells = " or ".join(f"({condition})" for _, condition, _, _ in checks) or "false"
    rules = " or ".join(f"({_breaks(contract, rule)})" for rule in contract.rules)
    return con.execute(
        f"select exists (select 1 from _text t join _typed y using (_row) where {cells}) "
        f"or exists (select 1 from _typed y where {rules or 'false'}) "
        f"or exists ({_repeated_keys(contract)})"
    ).fetchall()[0][0]


def _unless_pseudonym(value: str, contract: Contract, column: str = "col") -> str:
    """SQL: the value to show (at most SHOWN_CHARS characters), or NULL. No value that holds what looks like personal
    data (an e-mail address, a BSN, a phone number, an IBAN) is ever shown. A file with personal data (a contract
    with pseudonymised columns) shows no value that could be an identifier either: a value with a digit (client ids
    have them; a shifted line moves them into any column) or one holding a value of a pseudonymised column, except a
    date as written in a date column (``31-02-2023``: not a date). Labels (an unknown destination, say) stay visible;
    line and column find the rest."""
    shown_value = f"left({value}, {SHOWN_CHARS + 1})"
    hidden = [f"({screen.personal_sql(value)}) is not null"]
    if contract.pseudonymise:
        dates = [lit(c.name) for c in contract.columns if c.type in ("date", "timestamp")]
        date_shaped = (
            f"({column} in ({', '.join(dates)}) and regexp_full_match({value}, '[0-9]{{1,4}}[-/.][0-9]{{1,2}}[-/.]"
            "[0-9]{1,4}'))"
            if dates
            else "false"
        )
        holds = " or ".join(f"contains({value}, p.{q(c)})" for c in contract.pseudonymise)
        hidden.append(f"(regexp_matches({value}, '[0-9]') and not {date_shaped})")
        hidden.append(f"exists (select 1 from _text p where {holds})")
    return f"case when {' or '.join(hidden)} then null else {shown_value} end"


def load_references(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Make each reference CSV of the contract (e.g. the fidelity item catalogue seed) a temp table ref_<name>, once
    per connection and file (a seed does not change during a run; reading it costs 3 ms, for every file)."""
    loaded = _references_loaded.setdefault(con, {})
    for name, csv in contract.references.items():
        if loaded.get(name) == csv:
            continue
        con.execute(
            f"create or replace temp table {q('ref_' + name)} as select * from read_csv(?, header = true)",
            [str(PROJECT_ROOT / csv)],
        )
        loaded[name] = csv


# per connection (while it lives): the reference CSV each of its ref_<name> temp tables holds
_references_loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def validate(
    con: duckdb.DuckDBPyConnection,
    cells: FileCells,
    contract: Contract,
    source: Source,
    file_name: str = "",
    known: str | None = None,
    salt: str = "",
) -> tuple[int, int]:
    """Build ``_typed`` or raise Rejected. Returns the number of data rows, and how many of them were left out
    of ``_typed`` as lines the raw table ``known`` holds as the latest version of their key (see
    ``skip_known_lines``; none without ``known``)."""
    constants = file_name_values(file_name, source)
    screen.register(con)
    header_places = Places(cells.sheet, header_row=source.header_row if cells.sheet else 1)
    positions = map_header(cells.header, contract, source, constants, header_places)
    load_references(con, contract)
    line = line_hash(line_identity(contract, source, positions, constants, salt), positions)
    skipped = skip_known_lines(con, contract, line, known) if known else 0
    build_typed(con, contract, source, positions, constants, line, skipped > 0)
    problems, total = find_problems(con, contract, source, Places(cells.sheet, positions, header_places.header_row))
    if problems:
        raise Rejected(problems, total)
    con.execute("drop table _text")  # checked: the rows go on from _typed
    rows = con.execute("select count(*) from _typed").fetchall()[0][0] + skipped
    if rows == 0:
        raise Rejected([Problem(None, None, None, "the file has a header but no data rows")])
    return rows, skipped


def unfit_raw_rows(con: duckdb.DuckDBPyConnection, contract: Contract) -> list[tuple[str, str, int]]:
    """(column, file, rows) of stored rows that today's contract would reject as unfit for the marts (non-finite or
    out-of-bounds numbers, implausible years): rows a file brought before the contract was this strict."""
    parts = []
    for c in contract.columns:
        if c.type in ("integer", "decimal"):
            bad = [f"not isfinite({q(c.name)})" if c.type == "decimal" else "false"]
            bad += [f"{q(c.name)} < {c.min}"] if c.min is not None else []
            bad += [f"{q(c.name)} > {c.max}"] if c.max is not None else []
        elif c.type in ("date", "timestamp"):
            bad = [f"extract(year from {q(c.name)}) not between {FIRST_YEAR} and {LAST_YEAR}"]
        else:
            continue
        parts.append(
            f"select {lit(c.name)} as col, _file_name, count(*) from raw.{q(contract.raw_table)} "
            f"where {' or '.join(bad)} group by _file_name"
        )
    if not parts:
        return []
    return con.execute(f"{' union all '.join(parts)} order by 1, 2").fetchall()
