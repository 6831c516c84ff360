"""The serving asset: record this run's check results, then publish marts and audit atomically."""

import datetime as dt
import json

from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from pipelines.quality.checks import severity_of
from pipelines.resources import WarehouseResource
from pipelines.serving.publish import (
    NEWS_TAG,
    POSTGRES_OUTPUT,
    publish,
    record_check_results,
    record_output,
    record_publish,
)
from pipelines.warehouse import WAREHOUSE_POOL

SERVING_KEY = AssetKey(["serving", "care_outcomes"])
ROWS_PER_MART = "rows_per_mart"  # metadata of the serving asset: mart name -> rows published


def _metadata_text(metadata: dict) -> str:
    out = {}
    for key, value in metadata.items():
        out[key] = getattr(value, "value", value)
    return json.dumps(out, default=str)[:2000]


def check_rows(context: AssetExecutionContext) -> list[tuple]:
    """Every asset check evaluated in this run, as rows for audit.check_results."""
    rows = []
    for entry in context.instance.all_logs(context.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data
        severity = severity_of(evaluation)
        rows.append(
            (
                dt.datetime.fromtimestamp(entry.timestamp).replace(microsecond=0),
                evaluation.asset_key.to_user_string(),
                evaluation.check_name,
                bool(evaluation.passed),
                severity,
                bool(evaluation.blocking),
                evaluation.description,
                _metadata_text(evaluation.metadata or {}),
            )
        )
    return rows


def build_serving_asset(marts: list[AssetKey]):
    """The serving file, downstream of every mart (and so of every blocking check on them)."""

    @asset(
        key=SERVING_KEY,
        deps=marts,
        group_name="serving",
        kinds={"duckdb", "parquet"},
        description="The serving file BI tools read (CARE_OUTCOMES_WAREHOUSE): schema marts, audit.file_loads and "
        "audit.check_results, replaced atomically; plus one Parquet file per mart beside it.",
        pool=WAREHOUSE_POOL,
    )
    def serving_file(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        paths = warehouse.paths()
        rows = check_rows(context)
        with warehouse.connect() as con:
            record_check_results(con, context.run_id, rows)
            counts = publish(con, paths, context.run_id)
            record_publish(con, context.run_id, context.run.tags.get(NEWS_TAG))
        return MaterializeResult(
            metadata={
                "path": MetadataValue.path(str(paths.warehouse)),
                "parquet": MetadataValue.path(str(paths.parquet_dir)),
                ROWS_PER_MART: MetadataValue.json(counts),
                "checks_recorded": len(rows),
            }
        )

    return serving_file


POSTGRES_KEY = AssetKey(["serving", "postgres"])
POSTGRES_STEP = POSTGRES_KEY.to_python_identifier()  # the step's name in a run: serving__postgres
POSTGRES_LINE = "summary_line"  # metadata of the PostgreSQL asset: the refresh summary's line


class PostgresTarget:
    """The DSN as a plain object, not as Dagster config, so no run page or event log ever shows its password."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    def __repr__(self) -> str:
        from pipelines.serving.postgres import masked

        return f"PostgresTarget({masked(self.dsn)})"


@asset(
    key=POSTGRES_KEY,
    deps=[SERVING_KEY],
    group_name="serving",
    kinds={"postgres"},
    description="The same marts, audit and reference tables in PostgreSQL (CARE_OUTCOMES_POSTGRES_DSN), swapped "
    "in atomically, with row-level security for programme logins (care-outcomes postgres-grant).",
)
def postgres_schemas(
    context: AssetExecutionContext, warehouse: WarehouseResource, postgres: ResourceParam[PostgresTarget]
) -> MaterializeResult:
    from pipelines.serving.postgres import masked, publish_postgres

    dsn = postgres.dsn
    counts = publish_postgres(warehouse.paths().warehouse, dsn)
    with warehouse.connect() as con:  # swapped in: this night's PostgreSQL publish is done
        record_output(con, context.run_id, POSTGRES_OUTPUT)
    line = f"postgres:  {len(counts)} marts published to {masked(dsn)} (schemas marts, audit, reference)"
    return MaterializeResult(
        metadata={"database": masked(dsn), ROWS_PER_MART: MetadataValue.json(counts), POSTGRES_LINE: line}
    )
