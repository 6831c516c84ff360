"""Decide each inbound file's fate, in one place: loaded, quarantined or duplicate.

A file is loaded whole (its rows inserted into ``raw.<contract>`` and its audit row written in one
transaction) or not at all. A quarantined file's bytes are copied to the quarantine folder and its
reason recorded in ``audit.file_loads``. Files already recorded under the same name and bytes are
skipped, so refreshing the same inbox twice changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fnmatch
import hashlib
import logging
import os
import shutil
import stat
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.ingest.pseudonymise import copy_key, key_fingerprint
from pipelines.ingest.read import Unreadable, read_cells, release_cells
from pipelines.ingest.registry import Contract, Registry, Source
from pipelines.ingest.validate import Rejected, validate
from pipelines.privacy import drop_erased
from pipelines.warehouse import WarehouseFault, ensure_audit, has_table, q, shown, storage_fault, without_values

logger = logging.getLogger("care_outcomes.ingest")

SQL_TYPES = {"text": "varchar", "integer": "bigint", "decimal": "double", "date": "date", "timestamp": "timestamp"}
# after the contract's columns, every raw table says where each row came from
LINEAGE_COLUMNS = {
    "_load_id": "integer not null",  # audit.file_loads.load_id of the file
    "_source": "varchar not null",
    "_file_name": "varchar not null",
    "_source_row": "bigint not null",  # the row a person sees in the file
    "_loaded_at": "timestamp not null",
    # the row's content (every contract column as stored): a row a later file repeats unchanged is not stored again
    "_row_hash": "varchar",
    # while the row is the latest version of its key: the hash of the line it was last read from (its cells, under the
    # rules that made it this row; validate.line_identity). A later file's line with this hash is this row again and
    # is not typed, checked or hashed again: a nightly full export costs its changed lines. NULL once a later
    # version of the key is stored (and for rows stored before line hashes: their next line sets it).
    "_line_hash": "uhugeint",
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
    table = f"raw.{q(contract.raw_table)}"
    con.execute(f"create table if not exists {table} ({columns})")
    # a warehouse from before row identity: every stored row gets its content hash once (and its line hash when a
    # later file holds the line again)
    present = {
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = 'raw' and table_name = ? "
            "and column_name in ('_row_hash', '_line_hash')",
            [contract.raw_table],
        ).fetchall()
    }
    if "_row_hash" not in present:
        con.execute(f"alter table {table} add column _row_hash varchar")
        con.execute(f"update {table} set _row_hash = {row_hash(contract)}")
    if "_line_hash" not in present:
        con.execute(f"alter table {table} add column _line_hash {LINEAGE_COLUMNS['_line_hash']}")


def row_hash(contract: Contract, alias: str = "") -> str:
    """SQL: the hash of a row's content, every contract column as stored (client ids already pseudonymised)."""
    prefix = f"{alias}." if alias else ""
    cells = ", ".join(f"coalesce(cast({prefix}{q(c.name)} as varchar), chr(0))" for c in contract.columns)
    return f"md5(concat_ws(chr(31), {cells}))"


def _as_stored(contract: Contract, column: str, pseudonymise) -> str:
    """SQL: a column of _typed (as y) as raw stores it, a client id pseudonymised."""
    value = f"y.{q(column)}"
    return pseudonymise(value) if column in contract.pseudonymise else value


def same_key(contract: Contract, a: str, b: str) -> str:
    """SQL: rows ``a`` and ``b`` have the same key (an empty key column matching an empty one)."""
    return " and ".join(f"{a}.{q(k)} is not distinct from {b}.{q(k)}" for k in contract.key)


def _keep_line_hashes(con, contract: Contract, table: str, newest: str, stored: int) -> None:
    """Keep ``_line_hash`` set on the latest version of each key only: an earlier version of a key this file stored
    anew is no longer one a line can repeat (a row changed back is a new version), and the latest version of a key
    whose line this file repeated unchanged gets that line's hash (it was read again: the next file skips it)."""
    keys = ", ".join(q(k) for k in contract.key)
    if stored:
        con.execute(
            f"update {table} r set _line_hash = null from (select distinct {keys} from {table} where _load_id = "
            f"{newest}) n where {same_key(contract, 'r', 'n')} and r._load_id < {newest} and r._line_hash is not null"
        )
    con.execute(
        f"update {table} r set _line_hash = u._line_hash from (select c._load_id, c._source_row, "
        f"min(i._line_hash) as _line_hash from _incoming i join _latest c on {same_key(contract, 'c', 'i')} "
        "and c._row_hash = i._row_hash where c._line_hash is distinct from i._line_hash group by all) u "
        "where r._load_id = u._load_id and r._source_row = u._source_row"
    )


def sha256_of(fd: int) -> str:
    """The SHA-256 of the file behind an open descriptor (open_regular), read from its start; it stays open."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def check_inbox(inbox: Path, registry: Registry) -> None:
    """The inbox exists and holds at least one source folder: a mistyped --inbox must not pass for a quiet night."""
    if not inbox.is_dir():
        raise WarehouseFault(f"the inbox {inbox} does not exist (or is not a folder)")
    folders = sorted({s.folder for s in registry.sources.values()})
    if not any((inbox / folder).is_dir() for folder in folders):
        raise WarehouseFault(f"the inbox {inbox} holds none of the source folders ({', '.join(folders)})")


@dataclass(frozen=True)
class InboxEntry:
    """One entry of a source's inbox folder, as listed without following any link."""

    path: Path
    name: str  # as recorded and shown: '<folder>/<path below it>', every unprintable character escaped (shown())
    kind: str | None  # None for a regular file; else what it is ('a symbolic link', 'a FIFO', ...): never opened
    size: int
    mtime_ns: int


def _kind(mode: int) -> str | None:
    for test, kind in (
        (stat.S_ISREG, None),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "no regular file"


def inbox_entries(inbox: Path, source: Source) -> list[InboxEntry]:
    """Every entry of the source's folder and its sub-folders, hidden ones (starting with '.') left out, sorted by
    name. Nothing is followed: a link (to a file or a folder, inside the inbox or out of it) is an entry of its own,
    and so are FIFOs, sockets and devices; only regular files are ever read (``open_regular``)."""
    folder = inbox / source.folder
    try:
        if not stat.S_ISDIR(folder.lstat().st_mode):
            return []
    except OSError:
        return []
    entries: list[InboxEntry] = []
    pending = [folder]
    while pending:
        directory = pending.pop()
        try:
            listing = list(os.scandir(directory))
        except OSError:
            continue  # a folder that cannot be listed holds nothing to read
        for item in listing:
            if item.name.startswith("."):
                continue
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(item.path))
                continue
            path = Path(item.path)
            name = shown(f"{source.folder}/{path.relative_to(folder).as_posix()}")
            entries.append(InboxEntry(path, name, _kind(info.st_mode), info.st_size, info.st_mtime_ns))
    return sorted(entries, key=lambda e: e.name)


class NotRegular(OSError):
    """An inbox entry that is not a regular file living in the inbox: it is never read."""


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def open_regular(path: Path) -> int:
    """A file descriptor of ``path`` if it is a regular file: a link is not followed (O_NOFOLLOW) and a FIFO or device
    is never waited on (O_NONBLOCK), so nothing outside the inbox is read, and nothing hangs the night."""
    kind = _kind(os.lstat(path).st_mode)
    if kind is not None:
        raise NotRegular(f"it is {kind}, not a regular file")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a link since
            raise NotRegular("it is a symbolic link, not a regular file") from None
        raise
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotRegular(f"it is {kind}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int, path: Path) -> Path:
    """A path that opens exactly the file behind ``fd`` (Linux: /proc/self/fd/N), for readers that take a path
    (DuckDB, the workbook reader): the file checked is the file read, whatever its name holds. Elsewhere ``path``."""
    proc = Path(f"/proc/self/fd/{fd}")
    return proc if proc.exists() else path


def _record(con, load: FileLoad, now: dt.datetime) -> None:
    con.execute(
        "insert into audit.file_loads select coalesce(max(load_id), 0) + 1, ?, ?, ?, ?, ?, ?, ? from audit.file_loads",
        [load.file_name, load.source, load.status, load.rows_loaded, load.error, load.sha256, now],
    )


QUARANTINE_NAME_BYTES = 120  # of the file's own name in its quarantine copy's name (file systems take 255)


def quarantine_name(path: Path, sha: str) -> str:
    """The name of a quarantined file's copy: its hash, then its own name made safe (escaped, no separator) and cut
    to a bounded length, its extension kept."""
    name = shown(path.name).replace("/", "_")
    if len(name.encode()) > QUARANTINE_NAME_BYTES:
        suffix = shown(path.suffix)[:16]
        name = name.encode()[: QUARANTINE_NAME_BYTES - len(suffix.encode()) - 1].decode(errors="ignore") + "…" + suffix
    return f"{sha[:12]}_{name}"


def _keep_bytes(path: Path, sha: str, quarantine_dir: Path) -> None:
    """Copy the file's bytes into quarantine, from the regular file itself (never through a link)."""
    try:
        fd = open_regular(path)
    except OSError:
        return  # gone, or no longer a regular file: nothing to keep (its reason is recorded all the same)
    try:
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = quarantine_dir / quarantine_name(path, sha)
        with os.fdopen(fd, "rb", closefd=False) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.utime(target, ns=(os.fstat(fd).st_atime_ns, os.fstat(fd).st_mtime_ns))
    except OSError as exc:
        raise storage_fault(exc, quarantine_dir) or exc from None
    finally:
        os.close(fd)


def _insert_rows(
    con, contract: Contract, source: Source, file_name: str, now: dt.datetime, pseudonymise, rows: int
) -> None:
    """Store the rows of _typed (``rows`` of them) that are new or changed, and record what was stored."""
    selected = [_as_stored(contract, c.name, pseudonymise) for c in contract.columns]
    table = f"raw.{q(contract.raw_table)}"
    newest = "(select max(load_id) from audit.file_loads)"
    columns = ", ".join(map(q, raw_columns(contract)))
    incoming = (
        f"select s.* exclude (_line_hash), {row_hash(contract, 's')} as _row_hash, s._line_hash from (select "
        + ", ".join(f"{expr} as {q(c.name)}" for expr, c in zip(selected, contract.columns, strict=True))
        # the lineage columns, in the order of LINEAGE_COLUMNS
        + f", {newest} as _load_id, ? as _source, ? as _file_name, y._row as _source_row, ? as _loaded_at, "
        "y._line as _line_hash from _typed y) s"  # in the file's order: _typed is projections and filters of the file
    )
    lineage = [source.name, file_name, now]
    earlier = con.execute(f"select exists (select 1 from {table})").fetchall()[0][0]
    if not earlier:  # the table's first file: every row is new
        con.execute(f"insert into {table} ({columns}) {incoming}", lineage)
        con.execute(f"insert into audit.row_versions select {newest}, ?, 0", [rows])
        return
    # row identity by key and content: a row whose key's latest stored version has the same content is not stored
    # again (a nightly full export adds its changes only); a changed row is a new version, the earlier ones stay
    con.execute(f"create or replace temp table _incoming as {incoming}", lineage)
    keys = ", ".join(f"r.{q(k)}" for k in contract.key)
    # the latest stored version of each key the file holds (none for a programme's first file, say)
    con.execute(
        f"create or replace temp table _latest as select {keys}, r._row_hash, r._line_hash, r._load_id, r._source_row "
        f"from {table} r semi join _incoming n on {same_key(contract, 'r', 'n')} "
        f"qualify row_number() over (partition by {keys} order by r._load_id desc, r._source_row desc) = 1"
    )
    repeats = con.execute("select exists (select 1 from _latest)").fetchall()[0][0]
    stored = con.execute(
        f"insert into {table} ({columns}) select i.* from _incoming i where not exists "
        f"(select 1 from _latest c where {same_key(contract, 'c', 'i')} and c._row_hash = i._row_hash) "
        "order by i._source_row"
    ).fetchall()[0][0]
    con.execute(f"insert into audit.row_versions select {newest}, ?, ?", [stored, rows - stored])
    if repeats:
        _keep_line_hashes(con, contract, table, newest, stored)
    con.execute("drop table _incoming")
    con.execute("drop table _latest")
    if not repeats:  # no key of this file was stored before: it resubmits nothing
        return
    # which earlier files this one repeats keys of (a resubmission, or an overlapping export)
    key = " and ".join(f"r.{q(k)} = n.{q(k)}" for k in contract.key)
    con.execute(
        "insert into audit.resubmissions "
        f"select n._load_id, n._file_name, r._file_name, count(*) from {table} n "
        f"join {table} r on {key} and r._load_id < n._load_id where n._load_id = {newest} group by all"
    )


def _seen(con, sha: str, file_name: str) -> list[tuple[str, str]]:
    """Earlier decisions about these bytes under other names, (file_name, status), oldest first."""
    return con.execute(
        "select file_name, status from audit.file_loads where sha256 = ? and file_name <> ? order by load_id",
        [sha, file_name],
    ).fetchall()


def _handled(con, sha: str, file_name: str) -> bool:
    """Whether these bytes are what was last decided under this name: then there is nothing to do. An export that
    changed and changed back is decided again (its rows are compared with the latest stored versions), and a retry
    request for the name makes its earlier decisions not count."""
    last = con.execute(
        "select sha256 from audit.file_loads where file_name = ? and load_id > "
        "coalesce((select max(after_load_id) from audit.file_retries where file_name = ?), 0) "
        "order by load_id desc limit 1",
        [file_name, file_name],
    ).fetchall()
    return bool(last) and last[0][0] == sha


def _unreadable_signature(path: Path, file_name: str) -> str:
    """Stands in for the hash of a file that cannot be opened (or is no regular file: never opened): changes when the
    entry or its permissions change."""
    try:
        info = path.lstat()
    except OSError:
        return hashlib.sha256(f"gone:{file_name}".encode()).hexdigest()
    return hashlib.sha256(
        f"unreadable:{file_name}:{info.st_mode}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}".encode()
    ).hexdigest()


@dataclass
class Prepared:
    """What reading and checking one file found, before its fate is decided (``finish``)."""

    path: Path
    file_name: str
    source: Source
    sha: str
    handled: bool = False  # these bytes are what was last decided under this name: nothing to do
    rows: int = 0  # checked rows, in _typed of the connection that prepared the file
    reason: str | None = None  # why the file is quarantined
    keep_bytes: bool = True  # a file that cannot be opened has no bytes to keep
    read: bool = False  # read and checked (a file whose bytes were seen before under another name is not)
    skipped: int = 0  # of the rows, lines that are stored rows again (in _skip, not in _typed)
    stored_up_to: int = 0  # the newest _load_id in the raw table when the lines to skip were chosen
    status: str = "quarantined"  # the fate of a file with a reason: 'skipped' for an entry that is no regular file


def prepare(
    con,
    path: Path,
    file_name: str,
    source: Source,
    contract: Contract,
    log: logging.Logger | None = None,
    skip: bool = True,
) -> Prepared:
    """Read and check one file into ``_typed`` of ``con``: everything about a file that does not depend on the
    files decided before it in this run, so it can be done while the file before is stored. With ``skip``, lines
    that are the latest stored version of their key again are left out (``finish`` confirms that in its turn).
    Only a regular file is opened, and what is read is the file that was opened (``fd_path``)."""
    log = log or logger
    try:
        fd = open_regular(path)
    except NotRegular as exc:
        sha = _unreadable_signature(path, file_name)
        reason = f"{file_name}: skipped: {exc}; it is never opened or copied (put the file itself in the inbox)"
        handled = _handled(con, sha, file_name)
        return Prepared(path, file_name, source, sha, handled, reason=reason, keep_bytes=False, status="skipped")
    except OSError as exc:
        sha = _unreadable_signature(path, file_name)
        reason = f"{file_name}: could not be read: {exc.strerror or type(exc).__name__} (its bytes could not be kept)"
        return Prepared(path, file_name, source, sha, _handled(con, sha, file_name), reason=reason, keep_bytes=False)
    try:
        return _prepare_open(con, fd, path, file_name, source, contract, log, skip)
    finally:
        os.close(fd)


def _prepare_open(con, fd: int, path: Path, file_name: str, source: Source, contract: Contract, log, skip: bool):
    try:
        sha = sha256_of(fd)
    except OSError as exc:
        reason = f"{file_name}: could not be read: {exc.strerror or type(exc).__name__}"
        return Prepared(path, file_name, source, _unreadable_signature(path, file_name), reason=reason)
    prepared = Prepared(path, file_name, source, sha, _handled(con, sha, file_name))
    if prepared.handled or _seen(con, sha, file_name):  # a duplicate is not read (finish says so)
        return prepared
    try:
        if not any(fnmatch.fnmatch(path.name.lower(), p.lower()) for p in source.patterns):
            raise Unreadable(f"file name does not match this source's patterns ({', '.join(source.patterns)})")
        prepared.read = True
        cells = read_cells(con, fd_path(fd, path), source, named=path, fd=fd)
        table = f"raw.{q(contract.raw_table)}"
        known = None
        if (
            skip
            and os.fstat(fd).st_size >= SKIP_KNOWN_FROM_BYTES
            and con.execute(f"select exists (select 1 from {table} where _line_hash is not null)").fetchall()[0][0]
        ):
            known = table
            prepared.stored_up_to = _newest_stored(con, table)
        prepared.rows, prepared.skipped = validate(
            con, cells, contract, source, path.name, known=known, salt=key_fingerprint(con)
        )
    except (Unreadable, Rejected) as exc:
        prepared.reason = f"{file_name}: {exc}"
    except Exception as exc:  # anything else about this one file: it is quarantined, the others still load
        prepared.reason = f"{file_name}: could not be read: {without_values(exc)}"
        log.warning(f"{prepared.reason}\n{''.join(traceback.format_tb(exc.__traceback__))}")
    return prepared


def finish(
    con,
    prepared: Prepared,
    contract: Contract,
    quarantine_dir: Path,
    now: dt.datetime,
    pseudonymise,
    log: logging.Logger | None = None,
) -> FileLoad | None:
    """The one place a file's fate is decided and recorded, in the order of the run's files: loaded whole (the rows
    ``prepare`` left in ``con`` stored), quarantined or a duplicate; None when this exact file was handled before.
    Only a fault of the warehouse itself (a full disk, say) raises."""
    log = log or logger
    path, file_name, source, sha = prepared.path, prepared.file_name, prepared.source, prepared.sha
    if prepared.handled:
        return None
    if not prepared.keep_bytes:
        return _decided(
            con, FileLoad(file_name, source.name, prepared.status, 0, prepared.reason, sha), now, quarantine_dir.parent
        )
    seen = _seen(con, sha, file_name)
    if seen:
        first, status = seen[0]
        return _decided(
            con,
            FileLoad(file_name, source.name, "duplicate", 0, f"same bytes as {first} ({status}); nothing added", sha),
            now,
            quarantine_dir.parent,
        )
    if not prepared.read:  # never stored unread (what was seen stays seen: this is a guard, not a path)
        release_rows(con)
        prepared = prepare(con, path, file_name, source, contract, log)
    if prepared.skipped:
        prepared = _confirm_skips(con, prepared, contract, pseudonymise, log)
    if prepared.reason is not None:
        return _quarantined(
            con, path, FileLoad(file_name, source.name, "quarantined", 0, prepared.reason, sha), quarantine_dir, now
        )
    con.execute("begin transaction")
    try:
        dropped = drop_erased(con, contract, source.name, pseudonymise)  # clients erased on request stay erased
        rows = prepared.rows - dropped
        load = FileLoad(file_name, source.name, "loaded", rows, None, sha)
        _record(con, load, now)
        if dropped:
            con.execute("insert into audit.erasure_drops select max(load_id), ? from audit.file_loads", [dropped])
        _insert_rows(con, contract, source, file_name, now, pseudonymise, rows)
        con.execute("commit")
    except Exception as exc:
        with contextlib.suppress(duckdb.Error):  # a failed statement may have ended the transaction already
            con.execute("rollback")
        fault = storage_fault(exc, quarantine_dir.parent)
        if fault is not None:
            raise fault from None
        reason = f"{file_name}: could not be loaded: {without_values(exc)}"
        log.warning(f"{reason}\n{''.join(traceback.format_tb(exc.__traceback__))}")
        return _quarantined(
            con, path, FileLoad(file_name, source.name, "quarantined", 0, reason, sha), quarantine_dir, now
        )
    return load


def _newest_stored(con, table: str) -> int:
    """The newest _load_id of a raw table (0 while it is empty)."""
    return con.execute(f"select coalesce(max(_load_id), 0) from {table}").fetchall()[0][0]


def _confirm_skips(con, prepared: Prepared, contract: Contract, pseudonymise, log) -> Prepared:
    """The file as ``prepare`` left it if its skipped lines are still the latest versions of their keys and no
    checked row shares a key with one of them; else the file prepared again, in its turn (a file stored meanwhile
    may have changed a key), or read whole (a key in both: the file's own checks of repeated keys decide)."""
    table = f"raw.{q(contract.raw_table)}"
    args = (con, prepared.path, prepared.file_name, prepared.source, contract, log)
    if _newest_stored(con, table) != prepared.stored_up_to:
        current = con.execute(f"select count(*) from _skip s semi join {table} r on r._line_hash = s._line")
        if current.fetchall()[0][0] != prepared.skipped:
            release_rows(con)
            prepared = prepare(*args)
            if not prepared.skipped:
                return prepared
    keys = ", ".join(f"{_as_stored(contract, k, pseudonymise)} as {q(k)}" for k in contract.key)
    shared = con.execute(
        f"select exists (select 1 from {table} r semi join (select distinct {keys} from _typed y) n "
        f"on {same_key(contract, 'r', 'n')} "
        "where r._line_hash in (select _line from _skip))"
    ).fetchall()[0][0]
    if shared:
        release_rows(con)
        return prepare(*args, skip=False)
    return prepared


def _decided(con, load: FileLoad, now: dt.datetime, warehouse_dir: Path) -> FileLoad:
    try:
        _record(con, load, now)
    except duckdb.Error as exc:
        raise storage_fault(exc, warehouse_dir) or exc from None
    return load


def _quarantined(con, path: Path, load: FileLoad, quarantine_dir: Path, now: dt.datetime) -> FileLoad:
    _keep_bytes(path, load.sha256, quarantine_dir)
    return _decided(con, load, now, quarantine_dir.parent)


def ingest_contract(
    con,
    registry: Registry,
    contract: Contract,
    inbox: Path,
    quarantine_dir: Path,
    pseudonymise=lambda expr: expr,
    log: logging.Logger | None = None,
) -> list[FileLoad]:
    """Decide every new file of every source of this contract, oldest first (modification time to the second,
    then the name), so of two versions of a key in one run the later file wins; return what happened to each."""
    ensure_tables(con, contract)
    now = dt.datetime.now().replace(microsecond=0)
    files = [
        (entry.mtime_ns // 1_000_000_000, entry.name, entry.path, source)
        for source in registry.sources_for(contract.name)
        for entry in inbox_entries(inbox, source)
    ]
    ordered = [(file_name, path, source) for _, file_name, path, source in sorted(files, key=lambda f: f[:2])]
    loads: list[FileLoad] = []
    if not ordered:
        return loads
    # more connections to the database, each with its own temp tables: while one stores a file (in the files'
    # order), the others read and check the next ones, and DuckDB runs them at once (1,000 programme files: 37% less
    # time). File i uses connection i % n, so the connection of a file read ahead is free: the file before on it has
    # been stored.
    connections = [con, *(con.cursor() for _ in range(READ_AHEAD))]
    for other in connections[1:]:
        copy_key(con, other)
    pending: dict[int, Future] = {}
    try:
        with ThreadPoolExecutor(max(READ_AHEAD, 1), thread_name_prefix="prepare") as pool:
            for i, (file_name, path, source) in enumerate(ordered):
                mine = connections[i % len(connections)]
                future = pending.pop(i, None)
                prepared = future.result() if future else prepare(mine, path, file_name, source, contract, log)
                for j in range(i + 1, min(i + 1 + READ_AHEAD, len(ordered))):
                    if j not in pending and _small(ordered[j][1]):
                        name_j, path_j, source_j = ordered[j]
                        other = connections[j % len(connections)]
                        pending[j] = pool.submit(prepare, other, path_j, name_j, source_j, contract, log)
                try:
                    load = finish(mine, prepared, contract, quarantine_dir, now, pseudonymise, log)
                finally:
                    release_rows(mine)
                if load is not None:
                    loads.append(load)
    finally:
        for other in connections[1:]:
            release_rows(other)
            other.close()
    return loads


READ_AHEAD = 2  # files read and checked while the one before is stored (0: one file at a time)


PREPARE_AHEAD_BYTES = 64 << 20  # a larger file is read alone: two at once would need twice the memory

# from this size on, a file's lines that are stored rows again are skipped (a nightly full export). Looking them up
# costs a pass over the stored line hashes of the contract; a smaller file (a programme's quarterly submission) is
# typed and checked whole in less time than that, and a thousand of them would each pass over the hashes of all.
SKIP_KNOWN_FROM_BYTES = 4 << 20


def _small(path: Path) -> bool:
    try:
        return path.lstat().st_size < PREPARE_AHEAD_BYTES
    except OSError:  # prepare says what is wrong with it, in its turn
        return False


def release_rows(con) -> None:
    """Drop the temp tables of the file just decided: the next file, dbt and the checks get the memory back."""
    release_cells(con)
    con.execute("drop view if exists _skip")
    for table in ("_text", "_typed", "_lines"):
        con.execute(f"drop table if exists {table}")


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


# --- what a person sees and repairs: `care-outcomes files | retry | retract` -------------------


@dataclass(frozen=True)
class FileState:
    """The latest decision about one inbound file name."""

    load_id: int
    file_name: str
    source: str
    status: str  # loaded | quarantined | duplicate | retracted
    rows_loaded: int
    error: str | None
    decided_at: dt.datetime
    retry_requested: bool


def file_states(con: duckdb.DuckDBPyConnection) -> list[FileState]:
    """Every file name ever decided, with its latest decision; a retracted load shows as retracted."""
    if not has_table(con, "audit", "file_loads"):
        return []
    retracted = (
        "exists (select 1 from audit.file_retractions r where r.load_id = f.load_id)"
        if has_table(con, "audit", "file_retractions")
        else "false"
    )
    retry = (
        "exists (select 1 from audit.file_retries r where r.file_name = f.file_name and r.after_load_id >= f.load_id)"
        if has_table(con, "audit", "file_retries")
        else "false"
    )
    rows = con.execute(
        f"select load_id, file_name, source, case when {retracted} then 'retracted' else status end, rows_loaded, "
        f"error, loaded_at, {retry} from audit.file_loads f "
        "qualify row_number() over (partition by file_name order by load_id desc) = 1 order by file_name"
    ).fetchall()
    return [FileState(*row) for row in rows]


def waiting_in_quarantine(con: duckdb.DuckDBPyConnection, inbox: Path) -> list[FileState]:
    """Quarantined files still in the inbox: they wait for a corrected file or a `care-outcomes retry`."""
    present = set()
    for folder, _, names in os.walk(inbox):  # links are not followed, as in the ingest
        below = Path(folder).relative_to(inbox)
        present.update(shown((below / name).as_posix()) for name in names)
    return [s for s in file_states(con) if s.status == "quarantined" and s.file_name in present]


class RepairRefused(Exception):
    """A retry or retract that cannot be done as asked; the message says why."""


def request_retry(con: duckdb.DuckDBPyConnection, file_names: list[str]) -> list[str]:
    """Mark quarantined files (all of them when none are named) to be decided again by the next refresh."""
    states = {s.file_name: s for s in file_states(con)}
    unknown = [n for n in file_names if n not in states]
    if unknown:
        raise RepairRefused(f"no file named {', '.join(unknown)} was ever decided (see `care-outcomes files`)")
    not_quarantined = [f"{n} ({states[n].status})" for n in file_names if states[n].status != "quarantined"]
    if not_quarantined:
        raise RepairRefused(f"only quarantined files can be retried, not {', '.join(not_quarantined)}")
    chosen = file_names or [n for n, s in states.items() if s.status == "quarantined"]
    ensure_audit(con)
    con.executemany(
        "insert into audit.file_retries select ?, max(load_id), current_localtimestamp() from audit.file_loads",
        [[n] for n in chosen],
    )
    return chosen


def retract(con: duckdb.DuckDBPyConnection, registry: Registry, file_name: str) -> int:
    """Take a loaded file's rows out of raw (its audit row stays, and the retraction is recorded); returns the
    number of rows removed. The file is not loaded again while its bytes stay the same."""
    state = next((s for s in file_states(con) if s.file_name == file_name), None)
    if state is None or state.status != "loaded":
        what = "was never decided" if state is None else f"is {state.status}"
        raise RepairRefused(f"{file_name} {what}: only a loaded file can be retracted (see `care-outcomes files`)")
    # a later file's rows that were this file's unchanged are stored once, with this file: they would go with it
    contract = registry.sources[state.source].contract if state.source in registry.sources else None
    siblings = [s.name for s in registry.sources.values() if s.contract == contract]
    repeating = (
        [
            name
            for (name,) in con.execute(
                "select f.file_name from audit.row_versions v join audit.file_loads f using (load_id) "
                "where v.load_id > ? and v.rows_unchanged > 0 and f.source in (select unnest(?)) and not exists "
                "(select 1 from audit.file_retractions r where r.load_id = f.load_id) order by f.load_id",
                [state.load_id, siblings],
            ).fetchall()
        ]
        if has_table(con, "audit", "row_versions")
        else []
    )
    if repeating:
        raise RepairRefused(
            f"{file_name} cannot be retracted: later files repeat rows of it unchanged ({', '.join(repeating)}), "
            "which are stored once, with it. Retract those first (the newest first), or run "
            "`care-outcomes refresh --rebuild` to load the inbox anew without it"
        )
    tables = [c.raw_table for c in registry.contracts.values() if has_table(con, "raw", c.raw_table)]
    con.execute("begin transaction")
    try:
        removed = sum(
            con.execute(f"delete from raw.{q(t)} where _load_id = ?", [state.load_id]).fetchall()[0][0] for t in tables
        )
        con.execute(
            "insert into audit.file_retractions values (?, ?, ?, current_localtimestamp())",
            [file_name, state.load_id, removed],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return removed
