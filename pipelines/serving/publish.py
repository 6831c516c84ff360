"""Publish: copy the marts and the audit tables of the working database into the serving file.

The serving file is written under a temporary name beside the target, checkpointed, closed and
then moved over the old one with os.replace, so a BI tool holding the old file open keeps reading
a consistent old state and the next connection sees the new one. The Parquet files are written as one
new set (a folder in ``.parquet/`` beside the serving file) and published with it by turning the link
``parquet`` to that set: a reader sees last night's set or tonight's, never a mix.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import duckdb

from pipelines.warehouse import Paths, ensure_audit, lit, q, remove_dead_temp_folders, turn_link

# the audit tables BI tools see beside the marts (audit.check_results holds only the published run's checks)
AUDIT_TABLES = ["file_loads", "file_retries", "file_retractions", "resubmissions"]

# The comments of the published audit tables (the marts' and labels' come from dbt's YAML): BI tools show them.
AUDIT_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "file_loads": ("One row per inbound file each time a refresh decided it: loaded, quarantined (with the reason), "
                   "duplicate (the same bytes as a file loaded before) or skipped (not a regular file).", {
        "load_id": "Number of the decision, in order; raw rows carry the load_id of their file.",
        "file_name": "The file's path inside the inbox (unprintable characters escaped).",
        "source": "The source contract the file was read with (pipelines/ingest/sources).",
        "status": "loaded, quarantined, duplicate or skipped.",
        "rows_loaded": "Rows stored from the file (0 unless loaded).",
        "error": "Why the file was quarantined or skipped: file, line or cell, column and rule; never a cell value "
                 "that could identify someone.",
        "sha256": "Checksum of the file's bytes.",
        "loaded_at": "When the refresh decided the file (local time).",
    }),
    "file_retries": ("Quarantined files a person asked to decide again (care-outcomes retry).", {
        "file_name": "The file's path inside the inbox.",
        "after_load_id": "Decisions up to this load_id no longer count as seen for the file.",
        "requested_at": "When the retry was asked.",
    }),
    "file_retractions": ("Loaded files whose rows were taken out (care-outcomes retract); file_loads keeps them.", {
        "file_name": "The file's path inside the inbox.",
        "load_id": "The load the rows came from.",
        "rows_removed": "Rows taken out of raw.",
        "retracted_at": "When the file was retracted.",
    }),
    "resubmissions": ("Loaded files that repeat keys of files loaded before them: the later version counts.", {
        "load_id": "The later file's load.",
        "file_name": "The later file.",
        "earlier_file_name": "The file whose keys it repeats.",
        "repeated_keys": "How many keys it repeats.",
    }),
    "check_results": ("The data quality checks of the publish these marts come from (Great Expectations suites and "
                      "dbt tests, as Dagster asset checks).", {
        "run_id": "The Dagster run of the refresh.",
        "checked_at": "When the check ran.",
        "asset": "The mart (or raw table) checked, e.g. marts/ips_quarterly.",
        "check_name": "Name of the check.",
        "passed": "True where every expectation held.",
        "severity": "ERROR (blocks the publish when it fails) or WARN.",
        "blocking": "True where a failure keeps the previous marts published.",
        "description": "What the check asserts.",
        "details": "Which expectations failed and a few failing keys (never a personal value).",
    }),
}  # fmt: skip


def audit_comment_statements(target: str) -> list[str]:
    """COMMENT statements for the published audit tables in schema ``target``."""
    out = []
    for table, (about, columns) in AUDIT_DOCS.items():
        out.append(f"comment on table {target}.{q(table)} is {lit(about)}")
        out += [f"comment on column {target}.{q(table)}.{q(c)} is {lit(text)}" for c, text in columns.items()]
    return out


# Written in the storage format of DuckDB 1.0 so the older DuckDB builds inside BI drivers can read it.
SERVING_STORAGE_VERSION = "v1.0.0"


def record_check_results(con: duckdb.DuckDBPyConnection, run_id: str, rows: list[tuple]) -> None:
    """rows: (checked_at, asset, check_name, passed, severity, blocking, description, details)."""
    ensure_audit(con)
    con.execute("delete from audit.check_results where run_id = ?", [run_id])
    if rows:
        con.executemany(
            "insert into audit.check_results values (?, ?, ?, ?, ?, ?, ?, ?, ?)", [(run_id, *r) for r in rows]
        )


# the tag of a run that carries the signature of what it was started for (pipelines.orchestration.inbox_news)
NEWS_TAG = "care_outcomes/news_signature"


def record_publish(con: duckdb.DuckDBPyConnection, run_id: str, signature: str | None) -> None:
    """After the serving file was replaced: what this publish was built from (NULL: unknown, so the next night runs)."""
    ensure_audit(con)
    con.execute("insert into audit.publishes values (?, current_localtimestamp(), ?)", [run_id, signature])


REPORTS_OUTPUT, POSTGRES_OUTPUT = "reports", "postgres"  # the outputs a publish makes after the serving file


def outputs_wanted(postgres_dsn: str | None) -> tuple[str, ...]:
    """The outputs every publish must have made whole before a night counts as done."""
    return (REPORTS_OUTPUT, POSTGRES_OUTPUT) if postgres_dsn else (REPORTS_OUTPUT,)


def record_output(con: duckdb.DuckDBPyConnection, run_id: str, output: str) -> None:
    """An output of this run's publish (``reports``, ``postgres``) was made whole."""
    ensure_audit(con)
    con.execute("insert into audit.publish_outputs values (?, ?, current_localtimestamp())", [run_id, output])


def forget_publish(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """The run published, but a step after the publish (reports, PostgreSQL) failed: the next night must not count
    it as done, so its signature is dropped."""
    con.execute("update audit.publishes set news_signature = null where run_id = ?", [run_id])


def tables_in(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """The tables of a schema of the connection's database: marts; reference (the dbt seeds: labels, formats,
    benchmarks, bands, which BI tools and the reports read beside the marts); audit."""
    return [
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = ? "
            "and table_catalog = current_database() and table_type = 'BASE TABLE' order by table_name",
            [schema],
        ).fetchall()
    ]


def comment_statements(con: duckdb.DuckDBPyConnection, schema: str, target: str) -> list[str]:
    """COMMENT ON statements that give the tables and columns under ``target`` (a quoted schema, or catalog.schema)
    the dbt descriptions (persist_docs) of ``schema``: the same SQL for the serving file and for PostgreSQL, where
    Superset, Metabase and DBeaver show them."""
    here = "database_name = current_database() and schema_name = ? and comment is not null"
    out = []
    for table, comment in con.execute(
        f"select table_name, comment from duckdb_tables() where {here}", [schema]
    ).fetchall():
        out.append(f"comment on table {target}.{q(table)} is {lit(' '.join(comment.split()))}")
    for table, column, comment in con.execute(
        f"select table_name, column_name, comment from duckdb_columns() where {here}", [schema]
    ).fetchall():
        out.append(f"comment on column {target}.{q(table)}.{q(column)} is {lit(' '.join(comment.split()))}")
    return out


def publish(con: duckdb.DuckDBPyConnection, paths: Paths, run_id: str) -> dict[str, int]:
    """Write the marts, the reference seeds, the audit tables and this run's audit.check_results to the serving
    file. Returns rows per mart."""
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(paths)
    tmp = paths.warehouse.with_name(f".{paths.warehouse.name}.{os.getpid()}.tmp")
    ensure_audit(con)
    tables = tables_in(con, "marts")
    references = tables_in(con, "reference")
    counts: dict[str, int] = {}
    con.execute(f"attach {lit(str(tmp))} as serving (storage_version {lit(SERVING_STORAGE_VERSION)})")
    try:
        con.execute("create schema serving.marts")
        con.execute("create schema serving.audit")
        con.execute("create schema serving.reference")
        for table in references:
            con.execute(f"create table serving.reference.{q(table)} as select * from reference.{q(table)}")
        for table in tables:
            con.execute(f"create table serving.marts.{q(table)} as select * from marts.{q(table)}")
            counts[table] = con.execute(f"select count(*) from serving.marts.{q(table)}").fetchall()[0][0]
        for table in AUDIT_TABLES:
            con.execute(f"create table serving.audit.{q(table)} as select * from audit.{q(table)} order by all")
        con.execute(
            "create table serving.audit.check_results as "
            "select * from audit.check_results where run_id = ? order by asset, check_name",
            [run_id],
        )
        for statement in [
            *comment_statements(con, "marts", "serving.marts"),
            *comment_statements(con, "reference", "serving.reference"),
            *audit_comment_statements("serving.audit"),
        ]:
            con.execute(statement)
        con.execute("checkpoint serving")
    finally:
        con.execute("detach serving")
    parquet = _parquet_set(paths)
    _export_parquet(con, [f"marts.{q(t)}" for t in tables], parquet)
    _export_parquet(con, [f"audit.{q(t)}" for t in [*AUDIT_TABLES, "check_results"]], parquet / "audit")
    os.replace(tmp, paths.warehouse)
    turn_link(parquet, paths.parquet_dir)
    return counts


PARQUET_SETS = ".parquet"  # beside the serving file: the published Parquet set and the one before


def _parquet_set(paths: Paths) -> Path:
    """A new, empty folder for tonight's Parquet set."""
    sets = paths.parquet_dir.parent / PARQUET_SETS
    sets.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=dt.datetime.now().strftime("%Y%m%dT%H%M%S-"), dir=sets))
    folder.chmod(0o755)  # readable by the BI users, as the serving file is
    return folder


def remove_leftovers(paths: Paths) -> None:
    """Temporary files of a publish that was killed half-way (only one writer runs at a time, so they are stale), and
    the temporary folders of care-outcomes processes that were killed (dbt's parse and build folders, say)."""
    remove_dead_temp_folders()
    patterns = [(paths.warehouse.parent, f".{paths.warehouse.name}.*.tmp*"), (paths.warehouse.parent, ".*.link")]
    for directory, pattern in patterns:
        if directory.is_dir():
            for leftover in directory.glob(pattern):
                leftover.unlink(missing_ok=True)


def _export_parquet(con: duckdb.DuckDBPyConnection, tables: list[str], directory: Path) -> None:
    """One <table>.parquet per (quoted, schema-qualified) table, in a set nobody reads until it is published."""
    directory.mkdir(parents=True, exist_ok=True)
    for table in tables:
        name = table.split(".")[-1].strip('"')
        con.execute(f"copy {table} to {lit(str(directory / f'{name}.parquet'))} (format parquet)")
