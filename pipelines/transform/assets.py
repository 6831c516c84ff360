"""The dbt models as Dagster assets: staging -> intermediate -> marts, with dbt tests as asset checks."""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from pipelines.transform.project import dbt_build_args
from pipelines.transform.translator import CareOutcomesTranslator
from pipelines.warehouse import WAREHOUSE_POOL, WarehouseResource


def build_dbt_assets(project: DbtProject) -> AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=CareOutcomesTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def care_outcomes_dbt(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        """dbt build of every seed, model and data test, streamed into Dagster events."""
        yield from dbt.cli(dbt_build_args(warehouse.paths().work_db), context=context).stream()

    return care_outcomes_dbt


def mart_keys(dbt_assets_def: AssetsDefinition) -> list[AssetKey]:
    """The asset keys of the marts (the dbt models of schema marts)."""
    return [key for key in dbt_assets_def.keys if key.path[0] == "marts"]
