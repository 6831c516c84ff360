"""The warehouse: where the inbox and the DuckDB files live, the one writer at a time, SQL quoting and
the audit schema. Every stage reaches the working database through `WarehouseResource`.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_INBOX = PROJECT_ROOT / "data" / "sample"
DEFAULT_WAREHOUSE = PROJECT_ROOT / "warehouse" / "care_outcomes.duckdb"

# Every asset that writes the working database runs in this Dagster pool (limit 1 in deploy/dagster.yaml).
WAREHOUSE_POOL = "care_outcomes_warehouse"

# How much memory DuckDB may use while building (ingest, dbt), beyond which it works on disk: a national data set
# fits in a few gigabytes instead of taking what the machine has (DuckDB's own default is 80% of it).
MEMORY_LIMIT_VARIABLE = "CARE_OUTCOMES_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "3GB"
_SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.I)


def memory_limit(environ: Mapping[str, str] = os.environ) -> str:
    """CARE_OUTCOMES_MEMORY_LIMIT (e.g. 3GB, 1500MB), else the default; a value DuckDB would not take is refused."""
    value = (environ.get(MEMORY_LIMIT_VARIABLE) or DEFAULT_MEMORY_LIMIT).strip()
    if not _SIZE.fullmatch(value):
        raise WarehouseFault(
            f"{MEMORY_LIMIT_VARIABLE}={value!r} is no amount of memory: write it as DuckDB does, e.g. 3GB or 1500MB"
        )
    return value


_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_bytes(limit: str) -> int:
    """A memory_limit() value in bytes ('3GB' -> 3,000,000,000, as DuckDB counts it)."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)", limit.strip().lower()).groups()
    return int(float(number) * _UNITS[unit])


@dataclass(frozen=True)
class Paths:
    """Every path one refresh touches, derived from the inbox, the serving file and the extra source folders."""

    inbox: Path
    warehouse: Path
    sources_dirs: tuple[Path, ...] = ()

    @property
    def work_db(self) -> Path:
        """The working database the refresh builds in; BI tools never open it."""
        return self.warehouse.with_name(self.warehouse.stem + ".work.duckdb")

    @property
    def dbt_parse_state(self) -> Path:
        """dbt's parse state of the last build of this warehouse, so an unchanged dbt project is not parsed again."""
        return self.warehouse.with_name(self.warehouse.stem + ".dbt_parse.msgpack")

    @property
    def quarantine_dir(self) -> Path:
        """Where the bytes of every quarantined file are kept."""
        return self.warehouse.parent / "quarantine"

    @property
    def parquet_dir(self) -> Path:
        """Parquet export of every mart, replaced together with the serving file."""
        return self.warehouse.parent / "parquet"

    @property
    def reports_dir(self) -> Path:
        """The feedback reports (HTML and PDF), replaced together after each publish."""
        return self.warehouse.parent / "reports"

    @property
    def lock_file(self) -> Path:
        """Held by the one refresh that writes this warehouse."""
        return self.warehouse.with_name(self.warehouse.name + ".lock")

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance the command line records its runs in (the one `make dev` shows), unless DAGSTER_HOME
        names another."""
        return self.warehouse.parent / "dagster_home"

    @property
    def log_file(self) -> Path:
        """Dagster's and dbt's own lines of the last refresh started from the command line."""
        return self.warehouse.parent / "logs" / "last_refresh.log"


def resolve_paths(
    inbox: str | os.PathLike | None = None,
    warehouse: str | os.PathLike | None = None,
    sources_dirs: list[str | os.PathLike] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Paths:
    """Flags win over CARE_OUTCOMES_INBOX / _WAREHOUSE / _SOURCES_DIR, which win over the bundled defaults."""
    inbox = inbox or environ.get("CARE_OUTCOMES_INBOX") or SAMPLE_INBOX
    warehouse = warehouse or environ.get("CARE_OUTCOMES_WAREHOUSE") or DEFAULT_WAREHOUSE
    if sources_dirs is None:
        sources_dirs = [p for p in environ.get("CARE_OUTCOMES_SOURCES_DIR", "").split(os.pathsep) if p]
    return Paths(
        inbox=Path(inbox).resolve(),
        warehouse=Path(warehouse).resolve(),
        sources_dirs=tuple(Path(p).resolve() for p in sources_dirs),
    )


# --- SQL quoting -------------------------------------------------------------------------------


def q(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def rows(con, sql: str, params=()) -> list[dict]:
    """A query's rows as dicts by column name."""
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def lit(text: str) -> str:
    """Quote a string literal taken from the registry or a path (configuration, never data values)."""
    return "'" + text.replace("'", "''") + "'"


def without_values(message: object, limit: int = 300) -> str:
    """An error text on one line without the values it quotes: a value may be a client id."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", " ".join(str(message).split()))[:limit]


def shown(text: object, limit: int | None = None) -> str:
    """Text as it may stand in a message, a summary line or a log: every character that is not printable (control
    characters and line breaks, zero-width, format and other invisible characters, non-breaking and other unusual
    spaces, and a byte of a file name that was no UTF-8) written as an escape (``\\u200b``, ``\\n``, ``\\xeb``), so it
    can never start a line of its own or pass for another name; cut at ``limit`` characters (with ``…``)."""
    text = str(text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# --- the audit schema --------------------------------------------------------------------------

AUDIT_DDL = """
create schema if not exists audit;
create table if not exists audit.file_loads (
    load_id      integer primary key,
    file_name    varchar not null,
    source       varchar not null,
    status       varchar not null check (status in ('loaded', 'quarantined', 'duplicate', 'skipped')),
    rows_loaded  bigint not null,
    error        varchar,
    sha256       varchar not null,
    loaded_at    timestamp not null
);
-- a person asked to decide these quarantined files again (`care-outcomes retry`): earlier records up to
-- after_load_id no longer count as "seen"
create table if not exists audit.file_retries (
    file_name      varchar not null,
    after_load_id  integer not null,
    requested_at   timestamp not null
);
-- a loaded file's rows taken out of raw (`care-outcomes retract`); its audit.file_loads row stays
create table if not exists audit.file_retractions (
    file_name     varchar not null,
    load_id       integer not null,
    rows_removed  bigint not null,
    retracted_at  timestamp not null
);
-- a loaded file repeats keys of files loaded before it: the later version wins (by submitted_at where the
-- contract has it, else the file decided later, i.e. the later modification time, then the name)
create table if not exists audit.resubmissions (
    load_id            integer not null,
    file_name          varchar not null,
    earlier_file_name  varchar not null,
    repeated_keys      bigint not null
);
-- row identity: of a loaded file's rows, how many were stored (new keys, or new content for a key) and how many
-- were the latest stored version of their key already (unchanged: not stored again)
create table if not exists audit.row_versions (
    load_id         integer not null,
    rows_stored     bigint not null,
    rows_unchanged  bigint not null
);
-- every publish and what it was built from (inbox files, repairs, dbt project, registry: one signature); a night
-- whose signature equals the last publish's has nothing new
create table if not exists audit.publishes (
    run_id          varchar not null,
    published_at    timestamp not null,
    news_signature  varchar
);
-- each output a publish made whole (reports, postgres; the serving file and Parquet are the publish itself): a night
-- whose publish is missing one (killed, failed) is not "nothing new", so the next night makes it
create table if not exists audit.publish_outputs (
    run_id        varchar not null,
    output        varchar not null,
    completed_at  timestamp not null
);
-- the inbox this warehouse was built from: a refresh from another inbox needs --rebuild
create table if not exists audit.warehouse (
    inbox       varchar not null,
    created_at  timestamp not null
);
create table if not exists audit.check_results (
    run_id       varchar not null,
    checked_at   timestamp not null,
    asset        varchar not null,
    check_name   varchar not null,
    passed       boolean not null,
    severity     varchar not null,
    blocking     boolean not null,
    description  varchar,
    details      varchar
);
"""


def ensure_audit(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema audit with file_loads (one row per inbound file) and check_results (one row per check)."""
    con.execute(AUDIT_DDL)
    _allow_skipped(con)


def _allow_skipped(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse from before 'skipped' (an inbox entry that is no regular file: a link, a FIFO, a device) gets the
    status in audit.file_loads' check: DuckDB cannot alter a check, so the table is made anew with every row."""
    checks = con.execute(
        "select expression from duckdb_constraints() where database_name = current_database() "
        "and schema_name = 'audit' and table_name = 'file_loads' and constraint_type = 'CHECK'"
    ).fetchall()
    if not checks or any("skipped" in (expression or "") for (expression,) in checks):
        return
    ddl = AUDIT_DDL.split("create table if not exists audit.file_loads", 1)[1].split(";", 1)[0]
    con.execute("begin transaction")
    try:
        con.execute(f"create table audit.file_loads__new {ddl}")
        con.execute("insert into audit.file_loads__new select * from audit.file_loads")
        con.execute("drop table audit.file_loads")
        con.execute("alter table audit.file_loads__new rename to file_loads")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    # literals, not parameters: DuckDB loads pandas (0.5 s) to bind the first parameter of a process, which a night
    # with nothing new (pipelines/news.py) has no other use for
    where = f"table_schema = {lit(schema)} and table_name = {lit(table)}"
    return con.execute(f"select count(*) from information_schema.tables where {where}").fetchall()[0][0] > 0


# --- operational faults ------------------------------------------------------------------------


class WarehouseFault(Exception):
    """The warehouse cannot be used as it is (a full disk, a read-only folder, a damaged database): not the fault of
    any inbound file. The message is one line a person can act on."""


class WarehouseBusy(WarehouseFault):
    """Another process is refreshing the same warehouse."""


_STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file is too large for this file system",
}
_STORAGE_MESSAGES = {
    "No space left": "the disk is full",
    "Disk quota": "the disk quota is used up",
    "Read-only file system": "the file system is read-only",
    "Permission denied": "permission denied",
    "File too large": "the file is too large for this file system",
    # SQLite (the Dagster instance) names no errno: a write it could not make
    "database or disk is full": "the disk is full",
    "disk I/O error": "a write failed: the disk is full, or a file too large for this file system",
}


def storage_fault(exc: BaseException, where: Path) -> WarehouseFault | None:
    """The WarehouseFault an exception means when it is a storage problem (from Python or from DuckDB), else None."""
    what = _STORAGE_ERRNOS.get(getattr(exc, "errno", None) or 0)
    if what is None:
        what = next((text for marker, text in _STORAGE_MESSAGES.items() if marker in str(exc)), None)
    if what is None:
        return None
    folder = where if where.is_dir() else where.parent
    target = f"in {where}" if where.is_dir() else str(where)
    return WarehouseFault(
        f"cannot write {target} ({what}); free space or fix the permissions of {folder}, then refresh again"
    )


def check_folder(folder: Path) -> None:
    """The folder exists (or can be made) and takes a new file; else one line saying why."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".care-outcomes-write-test-"):
            pass
    except (FileExistsError, NotADirectoryError):
        raise WarehouseFault(f"cannot write in {folder}: it, or a folder above it, is a file") from None
    except OSError as exc:
        raise storage_fault(exc, folder) or WarehouseFault(f"cannot write in {folder}: {exc.strerror or exc}") from None


def prepare_warehouse(paths: Paths, rebuild: bool = False) -> Path | None:
    """Before a run writes: the folder takes files, the working database is a DuckDB file built from this inbox.
    With ``rebuild`` the working database is moved aside (returned) and the run starts anew from the inbox."""
    check_folder(paths.warehouse.parent)
    moved = _move_aside(paths) if rebuild and paths.work_db.exists() else None
    try:
        con = duckdb.connect(str(paths.work_db))
    except duckdb.Error as exc:
        if "not a valid DuckDB database file" in str(exc):
            raise WarehouseFault(
                f"the working database {paths.work_db} is not a valid DuckDB file (damaged?); "
                "`care-outcomes refresh --rebuild` moves it aside and loads every file in the inbox again"
            ) from None
        raise storage_fault(exc, paths.work_db) or WarehouseFault(f"cannot open {paths.work_db}: {exc}") from None
    try:
        ensure_audit(con)
        built_from = con.execute("select inbox from audit.warehouse").fetchall()
        if not built_from:
            con.execute("insert into audit.warehouse values (?, current_localtimestamp())", [str(paths.inbox)])
        elif built_from[0][0] != str(paths.inbox):
            raise WarehouseFault(
                f"{paths.warehouse} was built from inbox {built_from[0][0]}, not {paths.inbox}: one warehouse holds "
                "one inbox's data. Use another --warehouse, or `care-outcomes refresh --rebuild` to start this one "
                "anew from this inbox"
            )
    except duckdb.Error as exc:
        raise storage_fault(exc, paths.work_db) or exc from None
    finally:
        con.close()
    return moved


def turn_link(folder: Path, target: Path) -> None:
    """Publish ``folder`` (in a folder of sets beside ``target``) as ``target``, a link turned to it in one step
    (``os.replace``): a reader sees the set before or this one, never a mix. The set before stays (a reader may still
    hold it); older sets, and leftovers of a publish that was killed, are removed."""
    sets = folder.parent
    if target.exists() and not target.is_symlink():  # a folder of an earlier layout, or made by hand
        target.rename(sets / f"earlier-{os.getpid()}-{time.time_ns()}")
    link = target.with_name(f".{target.name}.{os.getpid()}.link")
    link.unlink(missing_ok=True)
    link.symlink_to(folder.relative_to(target.parent))
    previous = target.resolve() if target.is_symlink() else None
    os.replace(link, target)
    for old in sets.iterdir():
        if old not in (folder, previous) and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)


def _move_aside(paths: Paths) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    aside = paths.work_db.with_name(f"{paths.work_db.stem}.replaced-{stamp}.duckdb")
    for suffix in ("", ".wal"):
        source = Path(str(paths.work_db) + suffix)
        if source.exists():
            os.replace(source, Path(str(aside) + suffix))
    return aside


# --- temporary folders ------------------------------------------------------------------------

TEMP_PREFIX = "care-outcomes-"
_TEMP_NAME = re.compile(rf"{TEMP_PREFIX}[a-z-]+?-(\d+)-[^/]+")
OLD_TEMP_AGE = 24 * 3600  # a folder of ours without a process id in its name (an earlier version): removed after


def temp_folder(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder named with this process's id (``care-outcomes-<kind>-<pid>-...``), so the folders of a
    process that was killed can be told apart and removed by the next refresh (``remove_dead_temp_folders``)."""
    return tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{kind}-{os.getpid()}-", ignore_cleanup_errors=True)


def remove_dead_temp_folders(folder: Path | None = None) -> list[Path]:
    """Remove the temporary folders of care-outcomes processes that are gone (killed half-way): those named with the
    id of a process that no longer runs, and, from before names held the id, those older than a day."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            if path.is_symlink() or not path.is_dir():
                continue
            match = _TEMP_NAME.fullmatch(path.name)
            if match:
                if process_alive(int(match.group(1))):
                    continue
            elif time.time() - path.lstat().st_mtime < OLD_TEMP_AGE:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except OSError:
            continue
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- one writer at a time ----------------------------------------------------------------------


_held: dict[Path, list] = {}  # lock file -> [open file, depth]: re-entrant within one process
_held_guard = threading.Lock()


@contextmanager
def writer_lock(paths: Paths):
    """One refresh per warehouse at a time, whoever starts it (`care-outcomes refresh`, the schedule, the sensor,
    the UI): DuckDB allows one writing process. Re-entrant in a process, so the CLI's run takes it once."""
    lock_file = paths.lock_file
    with _held_guard:
        if lock_file in _held:
            _held[lock_file][1] += 1
        else:
            check_folder(lock_file.parent)
            handle = lock_file.open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise WarehouseBusy(
                    f"another refresh is writing {paths.warehouse} (lock {lock_file}); wait for it to finish"
                ) from None
            _held[lock_file] = [handle, 1]
    try:
        yield
    finally:
        with _held_guard:
            _held[lock_file][1] -= 1
            if _held[lock_file][1] == 0:
                _held.pop(lock_file)[0].close()  # closing the file releases the lock
