"""The Dagster code location: `pipelines.definitions:defs`."""

from pathlib import Path

from dagster import Definitions
from dagster_dbt import DbtCliResource

from pipelines.assets.checks import gx_checks
from pipelines.assets.dbt import build_dbt_assets, mart_keys
from pipelines.assets.ingest import ingest_assets
from pipelines.assets.serving import build_serving_asset
from pipelines.dbt_project import DBT_DIR, dbt_project_for
from pipelines.jobs import refresh_job
from pipelines.resources import WarehouseResource, dbt_executable
from pipelines.schedules import inbox_sensor, nightly_refresh


def build_defs(dbt_project_dir: Path = DBT_DIR) -> Definitions:
    """Everything of the code location; another dbt project directory serves model development."""
    project = dbt_project_for(dbt_project_dir)
    dbt_models = build_dbt_assets(project)
    return Definitions(
        assets=[*ingest_assets(), dbt_models, build_serving_asset(mart_keys(dbt_models))],
        asset_checks=gx_checks(),
        jobs=[refresh_job],
        schedules=[nightly_refresh],
        sensors=[inbox_sensor],
        resources={
            "warehouse": WarehouseResource(),
            "dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable()),
        },
    )


defs = build_defs()
