"""The corpus of bad inbound files (tests/bad_files/): each gets the fate and reason expected.yaml gives it.

All files sit in one inbox, as on a bad night: every bad file is quarantined with a reason a person
can act on and its bytes kept, the good file still loads, and nothing of a bad file reaches raw.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.ingest.load import ingest_contract
from pipelines.ingest.pseudonymise import hmac_sql, install_key
from pipelines.ingest.registry import load_registry
from pipelines.ingest.screen import looks_personal

CORPUS = Path(__file__).parent / "bad_files"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_night")
    inbox = tmp / "inbox"
    shutil.copytree(CORPUS, inbox, ignore=shutil.ignore_patterns("expected.yaml"))
    registry = load_registry(extra_dirs=())
    con = duckdb.connect(str(tmp / "work.duckdb"))
    install_key(con, b"corpus-key")
    loads = {}
    for contract in registry.contracts.values():
        for load in ingest_contract(con, registry, contract, inbox, tmp / "quarantine", pseudonymise=hmac_sql):
            loads[load.file_name] = load
    raw_files = {
        r[0]
        for table in registry.contracts
        for r in con.execute(f'select distinct _file_name from raw."{table}"').fetchall()
    }
    con.close()
    return loads, raw_files, tmp / "quarantine"


def test_corpus_is_big_enough():
    assert sum(e["status"] == "quarantined" for e in EXPECTED.values()) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_gets_its_expected_fate(outcome, name):
    loads, raw_files, quarantine = outcome
    expected = EXPECTED[name]
    load = loads[name]
    assert load.status == expected["status"], load.error
    for piece in expected["reason"]:
        assert piece in (load.error or ""), f"{piece!r} not in {load.error!r}"
    if load.status == "quarantined":
        assert load.error.startswith(f"{name}: "), "the reason names the file"
        assert "Traceback" not in load.error
        assert not re.search(r"C555\d\d\d", load.error), "no client id in a reason"
        assert looks_personal(load.error) is None, "no e-mail address, BSN, phone number or IBAN in a reason"
        kept = list(quarantine.glob(f"*_{Path(name).name}"))
        assert any(k.read_bytes() == (CORPUS / name).read_bytes() for k in kept), "the bytes are kept"
    assert (name in raw_files) == (load.status == "loaded")
