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
