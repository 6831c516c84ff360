"""What both reports share: the serving file read-only, the templates, names of files, the privacy thresholds."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import duckdb
import jinja2

from pipelines.reporting import numbers
from pipelines.warehouse import q, rows

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_MIN_COUNT = 5  # per-location outflow counts below this show as '<5'


class ReportError(Exception):
    """A report cannot be made (unknown programme or provider, no data for the year, no serving file)."""


@dataclass(frozen=True)
class Privacy:
    """What the reports hide themselves; national figures are hidden by the marts (the disclosure rule)."""

    min_count: int = DEFAULT_MIN_COUNT  # per-location counts below this are shown as '<N'


def default_privacy(min_count: int | None = None) -> Privacy:
    return Privacy(DEFAULT_MIN_COUNT if min_count is None else min_count)


@contextmanager
def serving(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The serving file, read-only: a report can be made while a refresh runs."""
    if not path.is_file():
        raise ReportError(f"{path}: no serving file yet; run `care-outcomes refresh` first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        has = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'reference' and table_name = 'metrics'"
        ).fetchone()[0]
        if not has:
            raise ReportError(f"{path}: published by an earlier version (no reference.metrics); run "
                              "`care-outcomes refresh --force` once")  # fmt: skip
        yield con
    finally:
        con.close()


def slug(name: str) -> str:
    """'ICT Maatwerk' -> 'ict-maatwerk': lower case, accents dropped, runs of other characters as '-'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "zonder-naam"


def file_names(names: list[str]) -> dict[str, str]:
    """name -> slug, unique: a second name with the same slug gets '-2', in sorted order so it stays put."""
    out, taken = {}, set()
    for name in sorted(names):
        base = slug(name)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        out[name] = candidate
    return out


def metric_formats(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """The metrics seed, published in schema reference: label_nl and number_format per metric."""
    return {r["metric"]: r for r in rows(con, "select * from reference.metrics order by sort_order")}


def published_at(con: duckdb.DuckDBPyConnection) -> str:
    """When the marts in this serving file were checked (the published run), as a Dutch date."""
    when = con.execute("select max(checked_at) from audit.check_results").fetchone()[0]
    return dutch_date((when or dt.datetime.now()).date())


class Shared:
    """What the reports read: what they read alike (national marts, reference seeds, the publish date) once per set,
    and each report's own rows through ``own``.

    ``whole_set``: the reports of every programme and provider are made, so ``own`` reads a mart once for all of them
    and hands each report its own rows (one query per mart instead of one per report: 8,800 queries and 22 s for a
    national set); otherwise (one report) ``own`` reads that report's rows only."""

    def __init__(self, con: duckdb.DuckDBPyConnection, whole_set: bool = False):
        self.con = con
        self.whole_set = whole_set
        self._read: dict[tuple, list[dict]] = {}
        self._grouped: dict[tuple, dict[object, list[dict]]] = {}

    def rows(self, sql: str, params: tuple = ()) -> list[dict]:
        key = (sql, tuple(params))
        if key not in self._read:
            self._read[key] = rows(self.con, sql, params)
        return self._read[key]

    def own(self, sql: str, column: str, value: object, params: tuple = ()) -> list[dict]:
        """The rows of ``sql`` whose ``column`` is ``value`` (one programme's or provider's), in the query's order.
        ``sql`` says where that filter goes with ``{own}``, before any ``?`` of ``params``."""
        if not self.whole_set:
            return rows(self.con, sql.format(own=f"{q(column)} = ?"), (value, *params))
        key = (sql, column, tuple(params))
        if key not in self._grouped:
            grouped: dict[object, list[dict]] = {}
            for row in rows(self.con, sql.format(own="true"), params):
                grouped.setdefault(row[column], []).append(row)
            self._grouped[key] = grouped
        return self._grouped[key].get(value, [])

    @cached_property
    def formats(self) -> dict[str, dict]:
        return metric_formats(self.con)

    @cached_property
    def published(self) -> str:
        return published_at(self.con)


MONTHS = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
          "november", "december"]  # fmt: skip


def dutch_date(day: dt.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=numbers.number,
        percent=numbers.percent,
        points=numbers.points,
        count=numbers.count,
        formatted=numbers.formatted,
    )
    env.globals["svg"] = lambda text: jinja2.utils.markupsafe.Markup(text)  # our own SVG, escaped where built
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
