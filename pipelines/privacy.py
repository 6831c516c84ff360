"""Privacy operations on a warehouse (AVG/GDPR): erasure that holds, a warehouse bound to its pseudonymisation key,
and retention of person-level rows. No Dagster here: the command line calls these under the writer lock.

- **Erasure** (``erase``): a client id is pseudonymised with the warehouse's key; every stored version of that
  client's rows is deleted from ``raw`` and from the ranked deregistrations, and the pseudonym goes on the erasure
  list (``audit.erasure_list``: the pseudonym, never the id), so rows of the client in any later file, resubmission,
  retried file or rebuild are dropped on ingest and counted (``audit.erasure_drops``). ``audit.erasures`` records
  when, which source and how many rows: no id, no pseudonym.
- **The key** (``key_fingerprint``, ``check_key``): the working database keeps a keyed hash of the key it was built
  with (``audit.warehouse.key_fingerprint``); a refresh with another key stops before it loads anything.
- **Retention** (``apply_retention``): with ``CARE_OUTCOMES_RETENTION_YEARS`` set, person-level rows whose end date
  lies more than that many years back are removed at every refresh (``audit.retention``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.warehouse import WarehouseFault, has_table, lit, q

# --- the key -------------------------------------------------------------------------------------

_FINGERPRINT_MESSAGE = b"care-outcomes: the fingerprint of a pseudonymisation key"


def key_fingerprint(key: bytes) -> str:
    """A keyed hash of the key (HMAC-SHA256 of a fixed text under the key): tells keys apart, gives nothing of it."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()


KEY_DIFFERS = (
    "CARE_OUTCOMES_PSEUDONYM_KEY differs from the key this warehouse ({warehouse}) was built with: its client ids "
    "would get other pseudonyms, and every client would be counted twice. Set the key it was built with; or, to move "
    "to the new key on purpose, run `care-outcomes refresh --rebuild` with the new key (every file in the inbox is "
    "loaded anew under it; see the README, *Privacy*)"
)


def stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    """The key fingerprint the working database was built with (None: a warehouse from before fingerprints)."""
    if not has_table(con, "audit", "warehouse"):
        return None
    columns = {r[0] for r in con.execute("select column_name from (describe audit.warehouse)").fetchall()}
    if "key_fingerprint" not in columns:
        return None
    found = con.execute("select key_fingerprint from audit.warehouse").fetchall()
    return found[0][0] if found else None


ERASED_UNDER_OLD_KEY = (
    "{warehouse} holds clients erased on request, listed by their pseudonyms under the key it was built with: a "
    "rebuild under another key would let them back in. Rebuild under the key it was built with"
)


def check_key(work_db: Path, warehouse: Path, fingerprint: str, rebuild: bool = False) -> None:
    """Stop (WarehouseFault: one line, exit 2) when the working database was built with another key; with
    ``rebuild`` (moving to a new key on purpose), only when it holds erased clients, whose pseudonyms under the old
    key could not be carried over. Read-only: it holds no lock and changes nothing."""
    if not work_db.exists():
        return
    try:
        con = duckdb.connect(str(work_db), read_only=True)
    except duckdb.Error:
        return  # damaged or busy: the refresh names that fault itself
    try:
        stored = stored_fingerprint(con)
        erased = (
            has_table(con, "audit", "erasure_list")
            and con.execute("select exists (select 1 from audit.erasure_list)").fetchall()[0][0]
        )
    finally:
        con.close()
    if stored is None or stored == fingerprint:
        return
    if not rebuild:
        raise WarehouseFault(KEY_DIFFERS.format(warehouse=warehouse))
    if erased:
        raise WarehouseFault(ERASED_UNDER_OLD_KEY.format(warehouse=warehouse))


def bind_key(con: duckdb.DuckDBPyConnection, fingerprint: str, warehouse: Path) -> None:
    """Store the key's fingerprint in a working database that has none (new, or from before fingerprints); refuse
    another key."""
    columns = {r[0] for r in con.execute("select column_name from (describe audit.warehouse)").fetchall()}
    if "key_fingerprint" not in columns:
        con.execute("alter table audit.warehouse add column key_fingerprint varchar")
    stored = stored_fingerprint(con)
    if stored is None:
        con.execute("update audit.warehouse set key_fingerprint = ?", [fingerprint])
    elif stored != fingerprint:
        raise WarehouseFault(KEY_DIFFERS.format(warehouse=warehouse))


# --- erasure -------------------------------------------------------------------------------------

PRIVACY_DDL = """
create schema if not exists audit;
-- clients erased on request: their pseudonym under this warehouse's key (never the id), and the source it holds for
-- (NULL: every source). Rows of such a client are dropped on ingest, whatever file brings them.
create table if not exists audit.erasure_list (
    pseudonym  varchar not null,
    source     varchar,
    erased_at  timestamp not null
);
-- every erasure: when, which source, how many stored rows it removed (no id, no pseudonym)
create table if not exists audit.erasures (
    erased_at     timestamp not null,
    source        varchar not null,
    rows_removed  bigint not null
);
-- rows of erased clients a loaded file held, dropped on ingest
create table if not exists audit.erasure_drops (
    load_id       integer not null,
    rows_dropped  bigint not null
);
-- rows removed by the retention setting (CARE_OUTCOMES_RETENTION_YEARS), per refresh and source
create table if not exists audit.retention (
    removed_at    timestamp not null,
    source        varchar not null,
    ended_before  date not null,
    rows_removed  bigint not null
);
"""

# the dbt table that keeps a ranked copy of person-level rows between builds (incremental): rows deleted from raw
# are deleted here too, or the marts would still count them
RANKED = ("intermediate", "int_outflow_latest_versions")


def ensure_privacy(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(PRIVACY_DDL)


def pseudonym(con: duckdb.DuckDBPyConnection, client_id: str) -> str:
    """The pseudonym of a client id under the key installed in ``con`` (pseudonymise.install_key), as ingest makes it
    (the id as a file gives it: trimmed, normalised)."""
    from pipelines.ingest.pseudonymise import hmac_sql
    from pipelines.ingest.screen import normalised

    return con.execute(f"select {hmac_sql('x')} from (select ?::varchar as x)", [normalised(client_id)]).fetchall()[0][
        0
    ]


@dataclass
class Erasure:
    removed: dict[str, int]  # source -> rows removed from raw
    files: list[str]  # inbox and quarantine files that still hold the id


def erase(con: duckdb.DuckDBPyConnection, registry, client_id: str, source: str | None, places: list[Path]) -> Erasure:
    """Remove every stored version of the client's rows (of ``source``, else of every source), put the client on the
    erasure list, record the erasure; name the files under ``places`` (inbox, quarantine) that still hold the id."""
    from pipelines.ingest.load import ensure_tables

    if source is not None and source not in registry.sources:
        raise WarehouseFault(f"there is no source {source!r} (sources: {', '.join(sorted(registry.sources))})")
    contracts = [c for c in registry.contracts.values() if c.pseudonymise]
    for contract in contracts:
        ensure_tables(con, contract)
    ensure_privacy(con)
    code = pseudonym(con, client_id)
    names = {c.name for c in contracts}
    sources = [source] if source else sorted(s.name for s in registry.sources.values() if s.contract in names)
    removed = {}
    now = dt.datetime.now().replace(microsecond=0)
    con.execute("begin transaction")
    try:
        for contract in contracts:
            table = f"raw.{q(contract.raw_table)}"
            matches = " or ".join(f"{q(column)} = {lit(code)}" for column in contract.pseudonymise)
            for name in sources:
                if registry.sources[name].contract != contract.name:
                    continue
                n = con.execute(f"delete from {table} where ({matches}) and _source = ?", [name]).fetchall()[0][0]
                removed[name] = n
                con.execute("insert into audit.erasures values (?, ?, ?)", [now, name, n])
        if any(removed.values()):
            _forget_ranked(con)
        con.execute("insert into audit.erasure_list values (?, ?, ?)", [code, source, now])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return Erasure(removed, holding_files(client_id, places))


def _forget_ranked(con: duckdb.DuckDBPyConnection) -> None:
    """Drop dbt's ranked copy of the deregistrations (``RANKED``, an incremental table that only ever adds keys and
    follows retractions): after rows left raw another way, the next build ranks every stored row anew (a full build
    of that one model), so no mart counts a removed row."""
    schema, table = RANKED
    con.execute(f"drop table if exists {schema}.{table}")


def holding_files(client_id: str, places: list[Path]) -> list[str]:
    """The regular files under ``places`` whose bytes hold the id (as UTF-8, Windows-1252 or UTF-16 text, or in a
    workbook's XML): the operator removes them, or a rebuild would read the id again (and drop its rows)."""
    encodings = ("utf-8", "cp1252", "utf-16-le", "utf-16-be")
    needles = {client_id.encode(enc) for enc in encodings if _encodes(client_id, enc)}
    found = []
    for place in places:
        if not place.is_dir():
            continue
        for folder, _, names in os.walk(place):
            for name in names:
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue
                try:
                    if _holds(path, needles):
                        found.append(str(path))
                except OSError:
                    continue
    return sorted(found)


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _holds(path: Path, needles: set[bytes]) -> bool:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(
                any(n in archive.read(info) for n in needles)
                for info in archive.infolist()
                if info.filename.endswith(".xml") and info.file_size < 256 << 20
            )
    longest = max(len(n) for n in needles)
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-longest:]
    return False


def drop_erased(con: duckdb.DuckDBPyConnection, contract, source: str, pseudonymise) -> int:
    """Before a file's rows are stored: drop from ``_typed`` the rows of clients on the erasure list (for this source
    or every source); returns how many."""
    if not contract.pseudonymise or not has_table(con, "audit", "erasure_list"):
        return 0
    if not con.execute("select exists (select 1 from audit.erasure_list)").fetchall()[0][0]:
        return 0
    listed = f"(select pseudonym from audit.erasure_list where source is null or source = {lit(source)})"
    matches = " or ".join(f"{pseudonymise('y.' + q(c))} in {listed}" for c in contract.pseudonymise)
    return con.execute(f"delete from _typed y where {matches}").fetchall()[0][0]


# --- retention -----------------------------------------------------------------------------------

RETENTION_VARIABLE = "CARE_OUTCOMES_RETENTION_YEARS"


def retention_years(environ: Mapping[str, str] = os.environ) -> int | None:
    raw = (environ.get(RETENTION_VARIABLE) or "").strip()
    if not raw or raw.lower() == "off":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise WarehouseFault(f"{RETENTION_VARIABLE}={raw!r}: a whole number of years (at least 1), or off")
    return int(raw)


def cutoff(years: int, today: dt.date | None = None) -> dt.date:
    """Rows that ended before this day are older than the retention period."""
    today = today or dt.date.today()
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def apply_retention(con: duckdb.DuckDBPyConnection, contract, years: int | None, today: dt.date | None = None) -> int:
    """Remove the contract's person-level rows whose end date lies before the cutoff, from raw (every stored version)
    and from the ranked copy; record per source in audit.retention. Returns the rows removed from raw."""
    names = {c.name for c in contract.columns}
    if years is None or not contract.pseudonymise or "end_date" not in names:
        return 0
    if not has_table(con, "raw", contract.raw_table):
        return 0
    ensure_privacy(con)
    before = cutoff(years, today)
    now = dt.datetime.now().replace(microsecond=0)
    removed = con.execute(
        f"delete from raw.{q(contract.raw_table)} where end_date < ? returning _source", [before]
    ).fetchall()
    by_source: dict[str, int] = {}
    for (name,) in removed:
        by_source[name] = by_source.get(name, 0) + 1
    for name, n in sorted(by_source.items()):
        con.execute("insert into audit.retention values (?, ?, ?, ?)", [now, name, before, n])
    if removed:
        _forget_ranked(con)
    return len(removed)


def carry_over(moved: Path | None, con: duckdb.DuckDBPyConnection) -> int:
    """After `refresh --rebuild` moved the working database aside: the erasure list (and the record of erasures and
    retention) goes on in the new one, so an erased client stays erased. Returns the clients carried over."""
    if moved is None or not moved.exists():
        return 0
    ensure_privacy(con)
    try:
        con.execute(f"attach {lit(str(moved))} as moved (read_only)")
    except duckdb.Error:  # a damaged database (the reason for many a rebuild): nothing can be read of it
        return 0
    try:
        tables = {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_catalog = 'moved' "
                "and table_schema = 'audit'"
            ).fetchall()
        }
        for table in ("erasure_list", "erasures", "retention"):
            if table in tables:
                con.execute(f"insert into audit.{table} select * from moved.audit.{table}")
        return con.execute("select count(*) from audit.erasure_list").fetchall()[0][0]
    finally:
        con.execute("detach moved")
