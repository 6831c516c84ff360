"""The dbt models as Dagster assets: staging -> intermediate -> marts, with dbt tests as asset checks."""

from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from pipelines.assets.ingest import WAREHOUSE_POOL
from pipelines.resources import WarehouseResource


class CareOutcomesTranslator(DagsterDbtTranslator):
    """Models are keyed <schema>/<name> (marts/ips_quarterly) and grouped by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """One group per dbt layer (staging, intermediate, marts, reference)."""
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            return dbt_resource_props["schema"]
        return super().get_group_name(dbt_resource_props)


# Unit tests check SQL logic on fixed rows; they run in the test suite, not in the nightly build.
BUILD_ARGS = ["build", "--exclude-resource-type", "unit_test"]


def build_dbt_assets(project: DbtProject) -> AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=CareOutcomesTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def care_outcomes_dbt(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        """dbt build of every seed, model and data test, streamed into Dagster events."""
        with warehouse.dbt_env():
            yield from dbt.cli(BUILD_ARGS, context=context).stream()

    return care_outcomes_dbt


def mart_keys(dbt_assets_def: AssetsDefinition) -> list[AssetKey]:
    return [key for key in dbt_assets_def.keys if key.path[0] == "marts"]
