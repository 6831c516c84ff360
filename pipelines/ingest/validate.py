"""Check the text cells of one file against its contract, in SQL, and build the typed rows.

Input: temp table ``_cells`` (from read.py). Output: temp table ``_typed`` with the contract's
columns, typed, plus ``_row``; or a list of problems, each naming row, column, value and rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb

from pipelines.ingest.registry import Contract, ContractColumn, Source
from pipelines.warehouse import PROJECT_ROOT, lit, q

MAX_REPORTED = 5


@dataclass(frozen=True)
class Problem:
    row: int | None
    column: str | None
    value: str | None
    rule: str

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row is not None else []
        if self.column:
            where.append(f"column '{self.column}'")
        if self.value is not None:
            where.append(f"value '{self.value}'")
        return (", ".join(where) + ": " if where else "") + self.rule


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
    return " ".join(header.split()).casefold()


def file_name_values(file_name: str, source: Source) -> dict[str, str]:
    """Contract values the source takes from the file name (e.g. programme and assessment date of a form)."""
    if source.file_name_pattern is None:
        return {}
    match = re.fullmatch(source.file_name_pattern, file_name)
    if match is None:
        raise Rejected([Problem(None, None, file_name, f"the file name does not match {source.file_name_pattern!r}")])
    return {k: v for k, v in match.groupdict().items() if v is not None}


def map_header(
    header: list[str], contract: Contract, source: Source, constants: dict[str, str] | None = None
) -> dict[str, int]:
    """Contract column -> position in the file; Rejected when a column is missing, unknown or doubled."""
    constants = constants or {}
    lookup = {_norm(k): v for k, v in source.columns.items()}
    lookup.update({_norm(c.name): c.name for c in contract.columns if _norm(c.name) not in lookup})
    ignored = {_norm(h) for h in source.ignore_columns}
    positions: dict[str, int] = {}
    problems: list[Problem] = []
    expected = ", ".join(source.columns or [c.name for c in contract.columns])
    for i, cell in enumerate(header):
        if not cell:
            problems.append(Problem(1, f"#{i + 1}", None, "the header cell is empty"))
            continue
        column = lookup.get(_norm(cell))
        if column is None:
            if _norm(cell) not in ignored:
                problems.append(Problem(1, cell, None, f"unknown column (expected: {expected})"))
        elif column in positions:
            problems.append(Problem(1, cell, None, f"a second column for '{column}'"))
        else:
            positions[column] = i
    for column in contract.columns:
        if column.name not in positions and column.name not in constants and not column.optional_column:
            label = next((k for k, v in source.columns.items() if v == column.name), column.name)
            problems.append(Problem(1, label, None, "missing column"))
    if problems:
        raise Rejected(problems)
    return positions


def _human_date_format(fmt: str) -> str:
    return fmt.replace("%d", "dd").replace("%m", "mm").replace("%Y", "yyyy").replace("%H", "hh").replace("%M", "mi")


def _typed_expr(column: ContractColumn, text: str, source: Source) -> str:
    number = f"replace({text}, ',', '.')" if source.decimal == "," else text
    if column.type == "integer":
        as_double = f"try_cast({number} as double)"
        return f"case when {as_double} = floor({as_double}) then cast({as_double} as bigint) end"
    if column.type == "decimal":
        return f"try_cast({number} as double)"
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


def build_typed(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    source: Source,
    positions: dict[str, int],
    constants: dict[str, str] | None = None,
) -> None:
    """Create ``_text`` (trimmed, value-mapped text) and ``_typed`` (cast) from ``_cells``."""
    constants = constants or {}
    empty = ", ".join(lit(v.casefold()) for v in ("", *source.null_values))
    con.execute("create or replace temp table _value_map (col varchar, label varchar, code varchar)")
    mapping_rows = [
        (column, _norm(label), code) for column, labels in source.values.items() for label, code in labels.items()
    ]
    if mapping_rows:
        con.executemany("insert into _value_map values (?, ?, ?)", mapping_rows)
    texts = []
    for column in contract.columns:
        if column.name in constants:
            texts.append(f"{lit(constants[column.name])} as {q(column.name)}")
            continue
        if column.name not in positions:
            texts.append(f"cast(null as varchar) as {q(column.name)}")
            continue
        raw = f"trim(c{positions[column.name]})"
        cell = f"case when lower({raw}) in ({empty}) then null else {raw} end"
        if column.name in source.values:
            cell = (
                f"coalesce((select m.code from _value_map m where m.col = {lit(column.name)} "
                f"and m.label = lower({cell})), {cell})"
            )
        texts.append(f"{cell} as {q(column.name)}")
    used = [f"c{i}" for i in positions.values()]
    not_blank = " or ".join(f"nullif(trim({c}), '') is not null" for c in used) or "true"
    con.execute(f"create or replace temp table _text as select _row, {', '.join(texts)} from _cells where {not_blank}")
    typed = ", ".join(f"{_typed_expr(c, 't.' + q(c.name), source)} as {q(c.name)}" for c in contract.columns)
    con.execute(f"create or replace temp table _typed as select t._row, {typed} from _text t")


def _checks(contract: Contract, source: Source) -> list[tuple[str, str, str]]:
    """(column label, SQL condition that marks a bad row over t=_text and y=_typed, rule text)."""
    checks = []
    for c in contract.columns:
        t, y = f"t.{q(c.name)}", f"y.{q(c.name)}"
        if c.required:
            checks.append((c.name, f"{t} is null", "empty, but required"))
        if c.type != "text":
            checks.append((c.name, f"{t} is not null and {y} is null", _type_rule(c, source)))
        if c.min is not None:
            checks.append((c.name, f"{y} < {c.min}", f"must be at least {_fmt(c.min)}"))
        if c.max is not None:
            checks.append((c.name, f"{y} > {c.max}", f"must be at most {_fmt(c.max)}"))
        if c.not_after_current_year:
            checks.append((c.name, f"{y} > extract(year from current_date)", "lies in the future"))
        if c.values:
            accepted = ", ".join(lit(v) for v in c.values)
            checks.append(
                (
                    c.name,
                    f"{y} not in ({accepted})",
                    f"unknown value (expected one of: {', '.join(c.values)}, or a label mapped in the source YAML)",
                )
            )
    return checks


def _shown(column: str, contract: Contract, table: str = "") -> str:
    """A column's value as text for a problem message; pseudonymised columns (client ids) never shown."""
    return "'(hidden)'" if column in contract.pseudonymise else f"cast({table}{q(column)} as varchar)"


def _rule_columns(contract: Contract, check: str) -> list[str]:
    return [c.name for c in contract.columns if re.search(rf"\b{re.escape(c.name)}\b", check)]


def find_problems(con: duckdb.DuckDBPyConnection, contract: Contract, source: Source) -> tuple[list[Problem], int]:
    """Every broken cell and rule of the file, the first few in row order, and how many there are."""
    parts = []
    for column, condition, rule in _checks(contract, source):
        # a pseudonymised value (client id) must never reach audit.file_loads: the row number finds it
        value = _shown(column, contract, "t.")
        parts.append(
            f"select t._row as row_no, {lit(column)} as col, {value} as val, {lit(rule)} as rule "
            f"from _text t join _typed y using (_row) where {condition}"
        )
    for rule in contract.rules:
        columns = _rule_columns(contract, rule.check)
        known = " and ".join(f"y.{q(c)} is not null" for c in columns) or "true"
        values = " || ', ' || ".join(f"'{c}=' || {_shown(c, contract, 'y.')}" for c in columns) or "''"
        parts.append(
            f"select y._row, {lit(', '.join(columns))}, {values}, "
            f"{lit('breaks rule: ' + rule.name + ' (' + rule.check + ')')} "
            f"from _typed y where {known} and not ({rule.check})"
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
    parts.append(
        f"select min(_row), {lit(', '.join(contract.key))}, "
        f"concat_ws(', ', {', '.join(_shown(k, contract) for k in contract.key)}), "
        f"'rows ' || string_agg(cast(_row as varchar), ', ' order by _row) || {lit(' ' + what)} "
        f"from _typed where {' and '.join(q(k) + ' is not null' for k in contract.key)} "
        f"group by {key} having {repeated}"
    )
    union = " union all ".join(parts)
    total = con.execute(f"select count(*) from ({union})").fetchall()[0][0]
    if not total:
        return [], 0
    rows = con.execute(f"select * from ({union}) order by row_no, col limit {MAX_REPORTED}").fetchall()
    return [Problem(r[0], r[1], r[2], r[3]) for r in rows], total


def load_references(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Make each reference CSV of the contract (e.g. the fidelity item catalogue seed) a temp table ref_<name>."""
    for name, csv in contract.references.items():
        con.execute(
            f"create or replace temp table {q('ref_' + name)} as select * from read_csv(?, header = true)",
            [str(PROJECT_ROOT / csv)],
        )


def validate(
    con: duckdb.DuckDBPyConnection, header: list[str], contract: Contract, source: Source, file_name: str = ""
) -> int:
    """Build ``_typed`` or raise Rejected. Returns the number of data rows."""
    constants = file_name_values(file_name, source)
    positions = map_header(header, contract, source, constants)
    load_references(con, contract)
    build_typed(con, contract, source, positions, constants)
    problems, total = find_problems(con, contract, source)
    if problems:
        raise Rejected(problems, total)
    rows = con.execute("select count(*) from _typed").fetchall()[0][0]
    if rows == 0:
        raise Rejected([Problem(None, None, None, "the file has a header but no data rows")])
    return rows
