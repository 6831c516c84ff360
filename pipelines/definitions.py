"""The Dagster code location: `pipelines.definitions:defs`, one package per stage of the data's path.

inbox -> ingest (raw) -> transform (dbt staging, intermediate, marts) -> quality (GX suites) -> serving -> reporting.
"""

from pathlib import Path

from dagster import Definitions, ResourceDefinition, definitions
from dagster_dbt import DbtCliResource

from pipelines.ingest.assets import ingest_assets
from pipelines.ingest.registry import load_registry
from pipelines.orchestration import build_alert_sensors, build_inbox_sensor, build_nightly_schedule, refresh_job
from pipelines.quality.checks import QualityResource, gx_checks
from pipelines.reporting.assets import ReportsResource, feedback_reports
from pipelines.resources import WarehouseResource
from pipelines.serving.assets import PostgresTarget, build_serving_asset, postgres_schemas
from pipelines.serving.postgres import dsn_from
from pipelines.transform.assets import build_dbt_assets, mart_keys
from pipelines.transform.project import DBT_DIR, dbt_executable, dbt_project_for
from pipelines.warehouse import Paths, memory_limit, resolve_paths


def build_defs(
    paths: Paths,
    dbt_project_dir: Path = DBT_DIR,
    reports: ReportsResource | None = None,
    postgres_dsn: str | None = None,
) -> Definitions:
    """Everything of the code location for one inbox and warehouse; another dbt project directory serves model
    development; ``reports``: the report settings (default: from the environment); ``postgres_dsn``: also publish
    to PostgreSQL. Raises RegistryError when a source YAML is broken."""
    postgres = [postgres_schemas] if postgres_dsn else []
    registry = load_registry(paths.sources_dirs)
    project = dbt_project_for(dbt_project_dir)
    dbt_models = build_dbt_assets(project, registry)
    return Definitions(
        assets=[
            *ingest_assets(registry),
            dbt_models,
            build_serving_asset(mart_keys(dbt_models)),
            feedback_reports,
            *postgres,
        ],
        asset_checks=gx_checks(),
        jobs=[refresh_job],
        schedules=[build_nightly_schedule(registry)],
        sensors=[build_inbox_sensor(registry), *build_alert_sensors()],
        resources={
            "warehouse": WarehouseResource.for_paths(paths, memory_limit()),
            "quality": QualityResource(),
            "reports": reports or ReportsResource.from_environment(),
            **(
                {"postgres": ResourceDefinition.hardcoded_resource(PostgresTarget(postgres_dsn))}
                if postgres_dsn
                else {}
            ),
            "dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable()),
        },
    )


@definitions
def defs() -> Definitions:
    """What `dagster dev` and the daemon load: the settings of the environment (and .env), read when the code
    location loads, not at import."""
    return build_defs(resolve_paths(), postgres_dsn=dsn_from(None))
