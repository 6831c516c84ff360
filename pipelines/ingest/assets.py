"""Ingest assets: the inbox folders of the registry's sources, and one raw table per inbound contract."""

from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, MetadataValue, asset

from pipelines.ingest.load import FileLoad, check_inbox, ingest_contract
from pipelines.ingest.pseudonymise import current_key, hmac_sql, install_key
from pipelines.ingest.registry import Contract, Registry
from pipelines.privacy import apply_retention, retention_years
from pipelines.resources import WarehouseResource
from pipelines.warehouse import WAREHOUSE_POOL, q


def inbox_specs(registry: Registry) -> list[AssetSpec]:
    """Every source folder of the registry (built-in and added) as an external asset: lineage starts at the files."""
    return [
        AssetSpec(
            key=AssetKey(["inbox", source.name]),
            description=f"Files dropped in <inbox>/{source.folder}/ ({source.description or source.path})",
            group_name="inbox",
            kinds={"file"},
            metadata={"contract": source.contract, "folder": source.folder, "source_yaml": str(source.path)},
        )
        for source in sorted(registry.sources.values(), key=lambda s: s.name)
    ]


def _loads_table(loads: list[FileLoad]) -> str:
    rows = [f"| {f.file_name} | {f.status} | {f.rows_loaded} | {(f.error or '').replace('|', '/')} |" for f in loads]
    return "\n".join(["| file | status | rows | reason |", "|---|---|---|---|", *rows])


def build_ingest_asset(registry: Registry, contract: Contract):
    @asset(
        key=AssetKey(["raw", contract.raw_table]),
        deps=[AssetKey(["inbox", s.name]) for s in registry.sources_for(contract.name)],
        group_name="ingest",
        kinds={"duckdb"},
        description=f"raw.{contract.raw_table}: {contract.description} "
        "Every accepted file's rows, resubmissions included.",
        pool=WAREHOUSE_POOL,
    )
    def _ingest(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        paths = warehouse.paths()
        check_inbox(paths.inbox, registry)
        with warehouse.connect() as con:
            if contract.pseudonymise:
                install_key(con, current_key(paths.inbox))
            loads = ingest_contract(
                con, registry, contract, paths.inbox, paths.quarantine_dir, pseudonymise=hmac_sql, log=context.log
            )
            expired = apply_retention(con, contract, retention_years())  # person-level rows past their time
            total = con.execute(f"select count(*) from raw.{q(contract.raw_table)}").fetchall()[0][0]
        for load in loads:
            if load.status == "quarantined":
                context.log.warning(f"quarantined {load.error}")
        return MaterializeResult(
            metadata={
                "files_loaded": sum(load.status == "loaded" for load in loads),
                "files_quarantined": sum(load.status == "quarantined" for load in loads),
                "files_duplicate": sum(load.status == "duplicate" for load in loads),
                "rows_loaded": sum(load.rows_loaded for load in loads),
                "rows_removed_by_retention": expired,
                "row_count": total,
                "files": MetadataValue.md(_loads_table(loads)) if loads else MetadataValue.text("no new files"),
                # names and statuses only (no reasons, which may quote a file): what an alert of this run names
                "decided": MetadataValue.json(
                    [{"file_name": x.file_name, "source": x.source, "status": x.status} for x in loads]
                ),
            }
        )

    _ingest.__name__ = f"raw_{contract.raw_table}"
    return _ingest


def ingest_assets(registry: Registry) -> list:
    """The inbox specs and one ingest asset per contract."""
    return [*inbox_specs(registry), *(build_ingest_asset(registry, c) for c in registry.contracts.values())]
