"""Decide each inbound file's fate, in one place: loaded, quarantined or duplicate.

A file is loaded whole (its rows inserted into ``raw.<contract>`` and its audit row written in one
transaction) or not at all. A quarantined file's bytes are copied to the quarantine folder and its
reason recorded in ``audit.file_loads``. Files already recorded under the same name and bytes are
skipped, so refreshing the same inbox twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.ingest.read import Unreadable, read_cells
from pipelines.ingest.validate import Rejected, q, validate
from pipelines.registry import Contract, Registry, Source

SQL_TYPES = {"text": "varchar", "integer": "bigint", "decimal": "double", "date": "date", "timestamp": "timestamp"}

AUDIT_DDL = """
create schema if not exists audit;
create table if not exists audit.file_loads (
    load_id      integer primary key,
    file_name    varchar not null,
    source       varchar not null,
    status       varchar not null check (status in ('loaded', 'quarantined', 'duplicate')),
    rows_loaded  bigint not null,
    error        varchar,
    sha256       varchar not null,
    loaded_at    timestamp not null
);
"""


@dataclass(frozen=True)
class FileLoad:
    file_name: str
    source: str
    status: str
    rows_loaded: int
    error: str | None
    sha256: str


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Create the audit table and ``raw.<contract>`` if missing, so an empty inbox still builds."""
    con.execute(AUDIT_DDL)
    con.execute("create schema if not exists raw")
    columns = ", ".join(f"{q(c.name)} {SQL_TYPES[c.type]}" for c in contract.columns)
    con.execute(
        f"create table if not exists raw.{q(contract.raw_table)} ({columns}, "
        "_load_id integer not null, _source varchar not null, _file_name varchar not null, "
        "_source_row bigint not null, _loaded_at timestamp not null)"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def inbox_files(inbox: Path, source: Source) -> list[Path]:
    folder = inbox / source.folder
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _record(con, load: FileLoad, now: dt.datetime) -> None:
    con.execute(
        "insert into audit.file_loads select coalesce(max(load_id), 0) + 1, ?, ?, ?, ?, ?, ?, ? from audit.file_loads",
        [load.file_name, load.source, load.status, load.rows_loaded, load.error, load.sha256, now],
    )


def _quarantine(path: Path, sha: str, quarantine_dir: Path) -> None:
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, quarantine_dir / f"{sha[:12]}_{path.name}")


def _insert_rows(con, contract: Contract, source: Source, file_name: str, now: dt.datetime, pseudonymise) -> None:
    columns = [c.name for c in contract.columns]
    selected = [pseudonymise(f"y.{q(c)}") if c in contract.pseudonymise else f"y.{q(c)}" for c in columns]
    con.execute(
        f"insert into raw.{q(contract.raw_table)} ({', '.join(q(c) for c in columns)}, "
        "_load_id, _source, _file_name, _source_row, _loaded_at) "
        f"select {', '.join(selected)}, (select max(load_id) from audit.file_loads), ?, ?, y._row, ? "
        "from _typed y order by y._row",
        [source.name, file_name, now],
    )


def decide(con, path: Path, file_name: str, source: Source, contract: Contract, quarantine_dir: Path,
           now: dt.datetime, pseudonymise) -> FileLoad | None:
    """The one function that decides a file's fate. None when this exact file was handled before."""
    sha = sha256_of(path)
    seen = con.execute(
        "select file_name, status, error from audit.file_loads where sha256 = ? order by load_id", [sha]
    ).fetchall()
    if any(name == file_name for name, _, _ in seen):
        return None
    if seen:
        first, status, _ = seen[0]
        load = FileLoad(file_name, source.name, "duplicate", 0, f"same bytes as {first} ({status}); nothing added", sha)
        _record(con, load, now)
        return load
    try:
        if not any(fnmatch.fnmatch(path.name.lower(), p.lower()) for p in source.patterns):
            raise Unreadable(f"file name does not match this source's patterns ({', '.join(source.patterns)})")
        header = read_cells(con, path, source)
        rows = validate(con, header, contract, source, path.name)
    except (Unreadable, Rejected) as exc:
        reason = f"{file_name}: {exc}"
        _quarantine(path, sha, quarantine_dir)
        load = FileLoad(file_name, source.name, "quarantined", 0, reason, sha)
        _record(con, load, now)
        return load
    load = FileLoad(file_name, source.name, "loaded", rows, None, sha)
    con.execute("begin transaction")
    try:
        _record(con, load, now)
        _insert_rows(con, contract, source, file_name, now, pseudonymise)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return load


def ingest_contract(con, registry: Registry, contract: Contract, inbox: Path, quarantine_dir: Path,
                    pseudonymise=lambda expr: expr) -> list[FileLoad]:
    """Load every new file of every source of this contract; return what happened to each."""
    ensure_tables(con, contract)
    now = dt.datetime.now().replace(microsecond=0)
    loads = []
    for source in registry.sources_for(contract.name):
        for path in inbox_files(inbox, source):
            load = decide(con, path, f"{source.folder}/{path.name}", source, contract, quarantine_dir, now, pseudonymise)
            if load is not None:
                loads.append(load)
    return loads
