"""The Dagster code location: `pipelines.definitions:defs`."""

from dagster import Definitions
from dagster_dbt import DbtCliResource

from pipelines.assets.dbt import care_outcomes_dbt
from pipelines.assets.ingest import ingest_assets
from pipelines.assets.serving import serving_file
from pipelines.dbt_project import dbt_project
from pipelines.jobs import refresh_job
from pipelines.resources import WarehouseResource, dbt_executable

defs = Definitions(
    assets=[*ingest_assets(), care_outcomes_dbt, serving_file],
    jobs=[refresh_job],
    resources={
        "warehouse": WarehouseResource(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
    },
)
