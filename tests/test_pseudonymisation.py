"""No raw client id is stored past ingest: not in any table of the working database nor the serving file."""

from __future__ import annotations

import csv
import hashlib
import hmac

import duckdb
import openpyxl

from pipelines.ingest.pseudonymise import DEVELOPMENT_KEY
from tests.conftest import SAMPLE


def raw_client_ids() -> set[str]:
    ids = set()
    for path in SAMPLE.glob("outflow*/*"):
        if path.suffix == ".csv":
            encoding, delimiter = ("cp1252", ";") if "zorgdossier" in path.parent.name else ("utf-8", ",")
            with path.open(encoding=encoding, newline="") as fh:
                ids |= {r[0] for r in list(csv.reader(fh, delimiter=delimiter))[1:]}
        else:
            sheet = openpyxl.load_workbook(path, read_only=True).active
            ids |= {r[0] for r in list(sheet.iter_rows(values_only=True))[1:]}
    assert len(ids) == 87 + 65 + 33 + 14
    return ids


def text_values(path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR' and table_catalog = current_database()"
        ).fetchall()
        values = set()
        for schema, table, column in columns:
            values |= {r[0] for r in con.execute(f'select distinct "{column}" from "{schema}"."{table}"').fetchall()}
        return values
    finally:
        con.close()


def test_no_raw_client_id_in_working_database_or_serving_file(sample_warehouse):
    ids = raw_client_ids()
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    for path in (work, sample_warehouse):
        values = text_values(path)
        assert not ids & values, f"raw client ids found in {path.name}"
        assert not any(i in v for v in values if v for i in list(ids)[:50]), "no id inside a longer text either"


def test_pseudonym_is_hmac_sha256_of_the_id_with_the_key(sample_warehouse):
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    con = duckdb.connect(str(work), read_only=True)
    stored = {r[0] for r in con.execute("select client_id from raw.outflow").fetchall()}
    con.close()
    expected = {hmac.new(DEVELOPMENT_KEY.encode(), i.encode(), hashlib.sha256).hexdigest() for i in raw_client_ids()}
    assert stored == expected


def test_no_client_id_or_pseudonym_leaves_the_working_database(sample_warehouse):
    """The README's privacy statement: person-level rows (and so pseudonyms) live in the working database only; the
    serving file (and PostgreSQL, its copy), the Parquet set, the reports, the logs and Dagster's storage hold
    aggregates, names of files and counts."""
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    with duckdb.connect(str(work), read_only=True) as con:
        pseudonyms = {r[0] for r in con.execute("select client_id from raw.outflow").fetchall()}
    assert len(pseudonyms) > 100
    ids = raw_client_ids()
    served = text_values(sample_warehouse)
    assert not pseudonyms & served and not ids & served
    folder = sample_warehouse.parent
    for parquet in (folder / "parquet").rglob("*.parquet"):
        columns = [r[0] for r in duckdb.sql(f"describe select * from '{parquet}'").fetchall()]
        for column in columns:
            values = {str(r[0]) for r in duckdb.sql(f"select distinct \"{column}\" from '{parquet}'").fetchall()}
            assert not pseudonyms & values and not ids & values, parquet
    sample = sorted(pseudonyms)[:40] + sorted(ids)[:40]
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.suffix == ".duckdb" or "quarantine" in path.parts:
            continue
        data = path.read_bytes()
        assert not any(value.encode() in data for value in sample), path
