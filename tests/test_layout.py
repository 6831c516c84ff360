"""One place for each fact, and settings passed as values: the contracts, the seeds, dbt's sources and the
definitions agree because they are derived from one another, not kept equal by hand."""

from __future__ import annotations

import ast
import csv
import json

import pytest
import yaml
from dagster import AssetKey

from pipelines.definitions import build_defs
from pipelines.ingest.load import raw_columns
from pipelines.ingest.registry import CONTRACTS_DIR, RegistryError, load_registry
from pipelines.transform.project import DBT_DIR, dbt_args, dbt_build_args
from pipelines.warehouse import DEFAULT_MEMORY_LIMIT, WarehouseFault, memory_limit, resolve_paths
from tests.conftest import ROOT
from tests.test_add_source import SOURCE_YAML


def seed_column(name: str, column: str) -> list[str]:
    with (DBT_DIR / "seeds" / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
        return [row[column] for row in csv.DictReader(fh)]


def test_destination_codes_live_only_in_the_seed():
    contract_yaml = (CONTRACTS_DIR / "outflow.yaml").read_text(encoding="utf-8")
    assert "betaald_werk_regulier" not in contract_yaml, "the outflow contract points at the seed, it lists no codes"
    contract = load_registry().contracts["outflow"]
    assert list(contract.column("destination").values) == seed_column("destinations", "destination")
    suite = (ROOT / "data_quality" / "suites" / "raw.py").read_text(encoding="utf-8")
    assert "betaald_werk_regulier" not in suite and 'seed("destinations")' in suite


def test_raw_tables_in_dbt_sources_are_the_contracts_columns():
    sources = yaml.safe_load((DBT_DIR / "models" / "staging" / "__sources.yml").read_text(encoding="utf-8"))
    tables = {t["name"]: [c["name"] for c in t["columns"]] for s in sources["sources"] for t in s["tables"]}
    contracts = load_registry().contracts
    assert set(tables) == {c.raw_table for c in contracts.values()}
    for contract in contracts.values():
        assert tables[contract.raw_table] == list(raw_columns(contract)), contract.name


def test_dbt_gets_the_working_database_as_a_var_not_from_the_environment():
    # regression: dbt used to read CARE_OUTCOMES_WORK_DB, which the resource wrote into os.environ for each run
    args = dbt_build_args("/data/wh/care_outcomes.work.duckdb")
    assert args[:3] == ["build", "--exclude-resource-type", "unit_test"], "unit tests run in the test suite only"
    assert json.loads(args[args.index("--vars") + 1]) == {
        "work_db": "/data/wh/care_outcomes.work.duckdb",
        "memory_limit": DEFAULT_MEMORY_LIMIT,
    }
    assert json.loads(dbt_build_args("/w.duckdb", "1500MB")[-1])["memory_limit"] == "1500MB"
    assert dbt_args("parse", ":memory:")[0] == "parse"
    # the nightly target takes the path from the var only; the postgres target (a second engine) reads its own
    work = yaml.safe_load((DBT_DIR / "profiles.yml").read_text())["care_outcomes"]["outputs"]["work"]
    assert work["path"] == "{{ var('work_db', ':memory:') }}" and "env_var" not in str(work)
    assert work["settings"]["memory_limit"] == f"{{{{ var('memory_limit', '{DEFAULT_MEMORY_LIMIT}') }}}}"


def test_duckdb_memory_limit_is_a_size_duckdb_takes():
    assert memory_limit({}) == DEFAULT_MEMORY_LIMIT
    assert memory_limit({"CARE_OUTCOMES_MEMORY_LIMIT": " 1500MB "}) == "1500MB"
    with pytest.raises(WarehouseFault, match="CARE_OUTCOMES_MEMORY_LIMIT='lots' is no amount of memory"):
        memory_limit({"CARE_OUTCOMES_MEMORY_LIMIT": "lots"})


def test_no_module_writes_the_process_environment():
    # regression: the CLI used to pass its paths to the resource by writing os.environ["CARE_OUTCOMES_*"]
    for path in (ROOT / "pipelines").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                assert not (isinstance(target, ast.Subscript) and ast.unparse(target.value) == "os.environ"), path


def test_definitions_carry_the_paths_they_were_built_with(tmp_path):
    paths = resolve_paths(tmp_path / "inbox", tmp_path / "wh" / "co.duckdb", sources_dirs=[], environ={})
    warehouse = build_defs(paths).resources["warehouse"]
    assert warehouse.paths() == paths
    assert paths.work_db == tmp_path / "wh" / "co.work.duckdb"


def test_added_sources_appear_in_the_lineage(tmp_path):
    (tmp_path / "outflow_ons_dossier.yaml").write_text(SOURCE_YAML, encoding="utf-8")
    paths = resolve_paths(tmp_path / "inbox", tmp_path / "co.duckdb", sources_dirs=[tmp_path], environ={})
    graph = build_defs(paths).resolve_asset_graph()
    parents = graph.get(AssetKey(["raw", "outflow"])).parent_keys
    assert AssetKey(["inbox", "outflow_ons_dossier"]) in parents
    assert AssetKey(["inbox", "outflow_zorgdossier"]) in parents


def test_a_source_without_a_folder_is_named_by_the_registry(tmp_path):
    (tmp_path / "no_folder.yaml").write_text("name: no_folder\ncontract: outflow\n", encoding="utf-8")
    paths = resolve_paths(tmp_path / "inbox", tmp_path / "co.duckdb", sources_dirs=[tmp_path], environ={})
    with pytest.raises(RegistryError, match=r"no_folder\.yaml: folder: Field required"):
        build_defs(paths)
