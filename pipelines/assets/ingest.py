"""Ingest assets: one per inbound contract, reading every source folder of that contract into raw.<contract>."""


from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, MetadataValue, asset

from pipelines.ingest.load import ingest_contract
from pipelines.pseudonymise import current_key, hmac_sql, install_key
from pipelines.registry import SOURCES_DIR, builtin_contracts, load_registry, read_yaml
from pipelines.resources import WarehouseResource

WAREHOUSE_POOL = "care_outcomes_warehouse"


def inbox_specs() -> list[AssetSpec]:
    """The built-in inbox folders as external assets, so the lineage starts at the files."""
    specs = []
    for path in sorted(SOURCES_DIR.glob("*.yaml")):
        source = read_yaml(path)
        specs.append(
            AssetSpec(
                key=AssetKey(["inbox", source["name"]]),
                description=f"Files dropped in <inbox>/{source['folder']}/ ({source.get('description', '')})",
                group_name="inbox",
                kinds={"file"},
                metadata={"contract": source["contract"], "folder": source["folder"]},
            )
        )
    return specs


def _loads_table(loads) -> str:
    rows = [f"| {l.file_name} | {l.status} | {l.rows_loaded} | {(l.error or '').replace('|', '/')} |" for l in loads]
    return "\n".join(["| file | status | rows | reason |", "|---|---|---|---|", *rows])


def build_ingest_asset(contract_name: str, inbox_keys: list[AssetKey]):
    contract = builtin_contracts()[contract_name]

    @asset(
        key=AssetKey(["raw", contract.raw_table]),
        deps=inbox_keys,
        group_name="ingest",
        kinds={"duckdb"},
        description=f"raw.{contract.raw_table}: {contract.description} Every accepted file's rows, resubmissions included.",
        pool=WAREHOUSE_POOL,
    )
    def _ingest(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        registry = load_registry()
        paths = warehouse.paths()
        with warehouse.connect() as con:
            if contract.pseudonymise:
                install_key(con, current_key(paths.inbox))
            loads = ingest_contract(
                con, registry, registry.contracts[contract_name], paths.inbox, paths.quarantine_dir, pseudonymise=hmac_sql
            )
            total = con.execute(f'select count(*) from raw."{contract.raw_table}"').fetchall()[0][0]
        for load in loads:
            if load.status == "quarantined":
                context.log.warning(f"quarantined {load.error}")
        return MaterializeResult(
            metadata={
                "files_loaded": sum(l.status == "loaded" for l in loads),
                "files_quarantined": sum(l.status == "quarantined" for l in loads),
                "files_duplicate": sum(l.status == "duplicate" for l in loads),
                "rows_loaded": sum(l.rows_loaded for l in loads),
                "row_count": total,
                "files": MetadataValue.md(_loads_table(loads)) if loads else MetadataValue.text("no new files"),
            }
        )

    _ingest.__name__ = f"raw_{contract.raw_table}"
    return _ingest


def ingest_assets() -> list:
    specs = inbox_specs()
    by_contract: dict[str, list[AssetKey]] = {}
    for spec in specs:
        by_contract.setdefault(spec.metadata["contract"], []).append(spec.key)
    return [*specs, *(build_ingest_asset(name, by_contract.get(name, [])) for name in builtin_contracts())]
