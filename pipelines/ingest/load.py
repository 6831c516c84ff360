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
from pipelines.ingest.registry import Contract, Registry, Source
from pipelines.ingest.validate import Rejected, validate
from pipelines.warehouse import ensure_audit, has_table, q

SQL_TYPES = {"text": "varchar", "integer": "bigint", "decimal": "double", "date": "date", "timestamp": "timestamp"}
# after the contract's columns, every raw table says where each row came from
LINEAGE_COLUMNS = {
    "_load_id": "integer not null",  # audit.file_loads.load_id of the file
    "_source": "varchar not null",
    "_file_name": "varchar not null",
    "_source_row": "bigint not null",  # the row a person sees in the file
    "_loaded_at": "timestamp not null",
}


def raw_columns(contract: Contract) -> dict[str, str]:
    """The columns of raw.<contract> with their SQL types: the contract's, then the lineage columns."""
    return {c.name: SQL_TYPES[c.type] for c in contract.columns} | LINEAGE_COLUMNS


@dataclass(frozen=True)
class FileLoad:
    """One row of audit.file_loads: what happened to one inbound file."""

    file_name: str
    source: str
    status: str
    rows_loaded: int
    error: str | None
    sha256: str


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Create the audit table and ``raw.<contract>`` if missing, so an empty inbox still builds."""
    ensure_audit(con)
    con.execute("create schema if not exists raw")
    columns = ", ".join(f"{q(name)} {sql_type}" for name, sql_type in raw_columns(contract).items())
    con.execute(f"create table if not exists raw.{q(contract.raw_table)} ({columns})")


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
    selected = [
        pseudonymise(f"y.{q(c.name)}") if c.name in contract.pseudonymise else f"y.{q(c.name)}"
        for c in contract.columns
    ]
    con.execute(
        f"insert into raw.{q(contract.raw_table)} ({', '.join(map(q, raw_columns(contract)))}) "
        # the lineage columns, in the order of LINEAGE_COLUMNS
        f"select {', '.join(selected)}, (select max(load_id) from audit.file_loads), ?, ?, y._row, ? "
        "from _typed y order by y._row",
        [source.name, file_name, now],
    )


def decide(
    con,
    path: Path,
    file_name: str,
    source: Source,
    contract: Contract,
    quarantine_dir: Path,
    now: dt.datetime,
    pseudonymise,
) -> FileLoad | None:
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


def ingest_contract(
    con, registry: Registry, contract: Contract, inbox: Path, quarantine_dir: Path, pseudonymise=lambda expr: expr
) -> list[FileLoad]:
    """Load every new file of every source of this contract; return what happened to each."""
    ensure_tables(con, contract)
    now = dt.datetime.now().replace(microsecond=0)
    loads = []
    for source in registry.sources_for(contract.name):
        for path in inbox_files(inbox, source):
            load = decide(
                con, path, f"{source.folder}/{path.name}", source, contract, quarantine_dir, now, pseudonymise
            )
            if load is not None:
                loads.append(load)
    return loads


def last_load_id(con: duckdb.DuckDBPyConnection) -> int:
    """The newest load_id of audit.file_loads (0 before the first file)."""
    if not has_table(con, "audit", "file_loads"):
        return 0
    return con.execute("select coalesce(max(load_id), 0) from audit.file_loads").fetchall()[0][0]


def loads_after(con: duckdb.DuckDBPyConnection, load_id: int) -> list[FileLoad]:
    """Every file decided after ``load_id``, in the order they were decided."""
    if not has_table(con, "audit", "file_loads"):
        return []
    rows = con.execute(
        "select file_name, source, status, rows_loaded, error, sha256 from audit.file_loads where load_id > ? "
        "order by load_id",
        [load_id],
    ).fetchall()
    return [FileLoad(*row) for row in rows]
