"""Publish the marts to PostgreSQL too, for BI set-ups that connect to it natively, with a login per programme.

Every publish builds schemas ``marts__next``, ``audit__next`` and ``reference__next`` from the serving file,
then swaps them in for ``marts``, ``audit`` and ``reference`` in one short transaction (schema renames), so a
connected BI user sees the old marts or the new ones, never a mix; the old schemas are dropped afterwards, and
only if no reader holds them (else the next publish does it). A publish killed half-way leaves ``__next``
schemas that the next one removes first: the served schemas are never touched before the swap.

Programme logins (``care-outcomes postgres-grant --program``) are kept in ``access.program_roles`` and knowledge
centre logins (``--centre``) in ``access.centre_roles``, which no publish replaces; every publish grants them again,
on the new tables, before the swap: read access to the IPS marts (programme-level marts under row-level security:
a programme login reads its programme's rows, a centre login every programme's), the national marts and the
reference labels; a centre login also reads ``audit.check_results``. Nothing else of ``audit`` and nothing of the
day-care outflow marts. A role in neither table reads no programme's rows.

The DSN's password never appears in a message: ``masked()`` is the only way a DSN is shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipelines.serving.publish import comment_statements, tables_in
from pipelines.warehouse import q

SERVED = ["marts", "audit", "reference"]  # the schemas a publish replaces
SERVED_AS = ["marts", "reference", "audit"]  # the order _grants names them in
NEXT, OLD = "__next", "__old"
ACCESS = "access"  # programme logins; never replaced
LOCK_TIMEOUT = "5s"  # how long the swap may wait for a lock before it gives up (the old marts stay served)

# DuckDB type -> PostgreSQL type
TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(38, 0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20, 0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIME": "time",
    "UUID": "uuid",
}


class PostgresFault(Exception):
    """PostgreSQL could not be reached or refused the publish; the message holds no password."""


DSN_ENV = "CARE_OUTCOMES_POSTGRES_DSN"


def dsn_from(flag: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """--postgres DSN wins over CARE_OUTCOMES_POSTGRES_DSN; None: no PostgreSQL publish."""
    return flag or environ.get(DSN_ENV) or None


def masked(dsn: str) -> str:
    """The DSN as it may be shown: 'postgresql://care:***@db/care', 'host=db password=*** dbname=care'."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    dsn = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn, flags=re.I)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", dsn, flags=re.I)


def pg_type(duckdb_type: str) -> str:
    base = duckdb_type.upper()
    if base.startswith("DECIMAL"):
        return base.replace("DECIMAL", "numeric").lower()
    return TYPES.get(base, "text")


@contextmanager
def connect(dsn: str):
    import psycopg

    try:
        con = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as exc:
        raise PostgresFault(f"cannot connect to PostgreSQL at {masked(dsn)}: {_clean(exc, dsn)}") from None
    try:
        yield con
    except psycopg.Error as exc:
        con.rollback()
        raise PostgresFault(f"PostgreSQL at {masked(dsn)} refused the publish: {_clean(exc, dsn)}") from None
    finally:
        con.close()


def _clean(exc: Exception, dsn: str) -> str:
    text = " ".join(str(exc).split())
    for secret in re.findall(r"password\s*=\s*'?([^'\s&]+)", dsn, flags=re.I) + re.findall(r"://[^:/@]*:([^@]+)@", dsn):
        text = text.replace(secret, "***")
    return text


def copy_table(source: duckdb.DuckDBPyConnection, relation: str, pg, target: str, batch: int = 50_000) -> int:
    """Create ``target`` in PostgreSQL with the columns of the DuckDB ``relation`` (types mapped) and COPY its rows."""
    columns = source.execute(f"describe {relation}").fetchall()
    definition = ", ".join(f"{q(name)} {pg_type(kind)}" for name, kind, *_ in columns)
    with pg.cursor() as cur:
        cur.execute(f"create table {target} ({definition})")
        result = source.execute(f"select * from {relation}")
        names = ", ".join(q(c[0]) for c in columns)
        n = 0
        with cur.copy(f"copy {target} ({names}) from stdin") as copy:
            while rows := result.fetchmany(batch):
                for row in rows:
                    copy.write_row(row)
                n += len(rows)
    return n


ACCESS_DDL = f"""
create schema if not exists {ACCESS};
create table if not exists {ACCESS}.program_roles (
    role_name text not null,
    program_id text not null,
    granted_at timestamp not null default localtimestamp,
    primary key (role_name, program_id)
);
revoke all on {ACCESS}.program_roles from public;
-- the programmes of the login that asks (current_user is the caller: a view reads the table with its owner's rights,
-- but does not change who asks): a login learns about itself only, and no caller can name another
create or replace view {ACCESS}.my_programmes with (security_barrier) as
    select program_id from {ACCESS}.program_roles where role_name = current_user;
create table if not exists {ACCESS}.centre_roles (
    role_name text primary key,
    granted_at timestamp not null default localtimestamp
);
revoke all on {ACCESS}.centre_roles from public;
create or replace view {ACCESS}.am_centre with (security_barrier) as
    select true as is_centre from {ACCESS}.centre_roles where role_name = current_user;
-- an earlier may_see took the role's name as an argument, so a programme login could ask about others; the policies
-- that used it go with it (and are made anew on the marts this publish swaps in, or by postgres-grant)
drop function if exists {ACCESS}.may_see(text, name) cascade;
-- for the login that asks (never a name it gives): its programme's rows, or every row for a centre login; the
-- publisher owns the marts, so row-level security does not apply to it
create or replace function {ACCESS}.may_see(program text) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select exists (select 1 from {ACCESS}.my_programmes where program_id = program)
        or exists (select 1 from {ACCESS}.am_centre)
$$;
revoke all on function {ACCESS}.may_see(text) from public;
"""


def _readable(cur, marts_schema: str) -> tuple[list[str], list[str]]:
    """(programme-level marts: those with a program_id, national marts) of a schema."""
    cur.execute(
        "select table_name, bool_or(column_name = 'program_id') from information_schema.columns "
        "where table_schema = %s group by table_name order by table_name",
        [marts_schema],
    )
    tables = cur.fetchall()
    return [t for t, has in tables if has], [t for t, _ in tables if t.endswith("_national")]


def _policies(cur, marts_schema: str) -> None:
    """Row-level security on every programme-level mart: a programme role reads its own rows only."""
    for table in _readable(cur, marts_schema)[0]:
        cur.execute(f"alter table {q(marts_schema)}.{q(table)} enable row level security")
        cur.execute(
            f"create policy programme_rows on {q(marts_schema)}.{q(table)} for select "
            f"using ({ACCESS}.may_see(program_id))"
        )


def _grants(cur, suffix: str, roles: list[str], centre: bool = False) -> None:
    """Read access for programme (or centre) roles on the schemas ``marts<suffix>``, ``reference<suffix>``: the
    programme-level and national marts, the reference labels; for the centre also ``audit<suffix>.check_results``."""
    marts, reference, audit = (q(schema + suffix) for schema in SERVED_AS)
    programme, national = _readable(cur, "marts" + suffix)
    for role in roles:
        cur.execute(f"grant usage on schema {marts}, {reference}, {ACCESS} to {q(role)}")
        cur.execute(f"grant execute on function {ACCESS}.may_see(text) to {q(role)}")
        cur.execute(f"grant select on {ACCESS}.my_programmes, {ACCESS}.am_centre to {q(role)}")
        for table in programme + national:
            cur.execute(f"grant select on {marts}.{q(table)} to {q(role)}")
        cur.execute(f"grant select on all tables in schema {reference} to {q(role)}")
        if centre:
            cur.execute(f"grant usage on schema {audit} to {q(role)}")
            cur.execute(f"grant select on {audit}.check_results to {q(role)}")


def _roles(cur, registry: str = "program_roles") -> list[str]:
    """The roles of ``access.<registry>`` to grant: not one that row-level security does not hold for (made
    superuser, given BYPASSRLS or the publisher's rights since postgres-grant), which would read beyond its rights."""
    cur.execute(f"select distinct role_name from {ACCESS}.{registry} order by 1")
    return [role for (role,) in cur.fetchall() if _bypasses(cur, role) is None]


def _bypasses(cur, role: str) -> str | None:
    """Why row-level security would not hold for ``role`` (None: it holds, or the role does not exist yet)."""
    cur.execute(
        "select rolsuper, rolbypassrls, pg_has_role(rolname, current_user, 'USAGE') from pg_roles where rolname = %s",
        [role],
    )
    found = cur.fetchone()
    if found is None:
        return None
    superuser, bypass, publisher = found
    if superuser:
        return "is a superuser"
    if bypass:
        return "has BYPASSRLS"
    if publisher:
        return "has the rights of the role that publishes (and owns) the marts"
    return None


def _drop(pg, schemas: list[str], lock_timeout: str | None = None) -> list[str]:
    """Drop what exists of ``schemas``; with a lock timeout, what a reader still holds is left (returned)."""
    import psycopg

    left = []
    for schema in schemas:
        try:
            with pg.transaction(), pg.cursor() as cur:
                if lock_timeout:
                    cur.execute(f"set local lock_timeout = '{lock_timeout}'")
                cur.execute(f"drop schema if exists {q(schema)} cascade")
        except psycopg.errors.LockNotAvailable:
            left.append(schema)
    return left


def publish_postgres(serving_file: Path, dsn: str) -> dict[str, int]:
    """Copy the serving file's schemas into PostgreSQL and swap them in; returns rows per mart."""
    source = duckdb.connect(str(serving_file), read_only=True)
    counts: dict[str, int] = {}
    try:
        with connect(dsn) as pg:
            pg.autocommit = True
            _drop(pg, [s + NEXT for s in SERVED] + [s + OLD for s in SERVED])  # a killed publish's leftovers
            with pg.transaction(), pg.cursor() as cur:
                cur.execute(ACCESS_DDL)
            with pg.transaction():
                for schema in SERVED:
                    with pg.cursor() as cur:
                        cur.execute(f"create schema {q(schema + NEXT)}")
                    for table in tables_in(source, schema):
                        n = copy_table(source, f"{schema}.{q(table)}", pg, f"{q(schema + NEXT)}.{q(table)}")
                        if schema == "marts":
                            counts[table] = n
                    with pg.cursor() as cur:
                        for statement in comment_statements(source, schema, q(schema + NEXT)):
                            cur.execute(statement)
                with pg.cursor() as cur:
                    _policies(cur, "marts" + NEXT)
                    _grants(cur, NEXT, _roles(cur))
                    _grants(cur, NEXT, _roles(cur, "centre_roles"), centre=True)
            with pg.transaction(), pg.cursor() as cur:  # the swap: renames only, in one transaction
                cur.execute(f"set local lock_timeout = '{LOCK_TIMEOUT}'")
                for schema in SERVED:
                    cur.execute("select 1 from pg_namespace where nspname = %s", [schema])
                    if cur.fetchone():
                        cur.execute(f"alter schema {q(schema)} rename to {q(schema + OLD)}")
                    cur.execute(f"alter schema {q(schema + NEXT)} rename to {q(schema)}")
            _drop(pg, [s + OLD for s in SERVED], lock_timeout=LOCK_TIMEOUT)
    finally:
        source.close()
    return counts


def _check_login(cur, role: str) -> list[str]:
    """Refuse a role that row-level security does not hold for; create it (LOGIN) if missing. Returns what was done."""
    why = _bypasses(cur, role)
    if why is not None:
        raise PostgresFault(
            f"role {role} {why}: row-level security does not hold for it, so it would read every programme's "
            "rows. Use a role of its own without those rights (or ALTER ROLE ... NOSUPERUSER NOBYPASSRLS, and "
            "take it out of the publisher's role)"
        )
    cur.execute("select 1 from pg_roles where rolname = %s", [role])
    if cur.fetchone():
        return []
    cur.execute(f"create role {q(role)} login")
    cur.execute(f"alter role {q(role)} set default_transaction_read_only = on")
    return [f"created role {role} (LOGIN, read-only; set its password: ALTER ROLE {role} PASSWORD '...')"]


def _valid_role(role: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise PostgresFault(f"role {role!r}: use lower-case letters, digits and _ (PostgreSQL folds names)")


def _grant_now(cur, roles: list[str], centre: bool) -> None:
    """If marts are served already: their policies (if they have none yet) and these roles' grants."""
    cur.execute("select 1 from pg_namespace where nspname = 'marts'")
    if cur.fetchone():
        cur.execute("select 1 from pg_policies where schemaname = 'marts' and policyname = 'programme_rows'")
        if not cur.fetchone():
            _policies(cur, "marts")
        _grants(cur, "", roles, centre=centre)


def grant_program(dsn: str, program_id: str, role: str) -> list[str]:
    """Give ``role`` (created with LOGIN if missing) ``program_id``'s rows of the programme-level marts and the
    national marts, now and after every publish. Returns what was done, for the terminal."""
    _valid_role(role)
    with connect(dsn) as pg:
        pg.autocommit = True
        with pg.transaction(), pg.cursor() as cur:
            cur.execute(ACCESS_DDL)
            cur.execute(f"select 1 from {ACCESS}.centre_roles where role_name = %s", [role])
            if cur.fetchone():
                raise PostgresFault(f"role {role} is a knowledge centre login, which reads every programme: "
                                    "give the programme a role of its own")  # fmt: skip
            done = _check_login(cur, role)
            cur.execute(
                f"insert into {ACCESS}.program_roles (role_name, program_id) values (%s, %s) on conflict do nothing",
                [role, program_id],
            )
            _grant_now(cur, [role], centre=False)
    return [*done, f"role {role} sees programme {program_id} and the national marts"]


def grant_centre(dsn: str, role: str) -> list[str]:
    """Give ``role`` (created with LOGIN if missing) read access to every programme's rows of the IPS marts, the
    national marts, the reference labels and the check results, now and after every publish."""
    _valid_role(role)
    with connect(dsn) as pg:
        pg.autocommit = True
        with pg.transaction(), pg.cursor() as cur:
            cur.execute(ACCESS_DDL)
            cur.execute(f"select program_id from {ACCESS}.program_roles where role_name = %s", [role])
            mine = sorted(r[0] for r in cur.fetchall())
            if mine:
                raise PostgresFault(f"role {role} is the login of programme {', '.join(mine)}: "
                                    "give the knowledge centre a role of its own")  # fmt: skip
            done = _check_login(cur, role)
            cur.execute(f"insert into {ACCESS}.centre_roles (role_name) values (%s) on conflict do nothing", [role])
            _grant_now(cur, [role], centre=True)
    return [*done, f"role {role} reads every programme's rows of the IPS marts, the national marts and the checks"]
