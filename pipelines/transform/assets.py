"""The dbt models as Dagster assets: staging -> intermediate -> marts, with dbt tests as asset checks."""

from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from pipelines.ingest.registry import Registry
from pipelines.ingest.validate import unfit_raw_rows
from pipelines.resources import WarehouseResource
from pipelines.transform.in_process import run_dbt
from pipelines.transform.project import dbt_build_args
from pipelines.transform.translator import CareOutcomesTranslator
from pipelines.transform.worker import keep_state
from pipelines.warehouse import WAREHOUSE_POOL, has_table, temp_folder


class DbtBuildFailed(Exception):
    """dbt could not build a model from the stored rows; the message names the model, the column and the files."""


def build_dbt_assets(project: DbtProject, registry: Registry) -> AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=CareOutcomesTranslator(),
        pool=WAREHOUSE_POOL,
    )
    def care_outcomes_dbt(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        """dbt build of every seed, model and data test, streamed into Dagster events."""
        # dbt's artefacts and logs of this build live as long as the step: dbt/target must not grow every night
        with temp_folder("dbt") as target:
            yield from _build(context, dbt, warehouse, registry, Path(target))

    return care_outcomes_dbt


def _build(context, dbt: DbtCliResource, warehouse: WarehouseResource, registry: Registry, target: Path):
    paths = warehouse.paths()
    args = dbt_build_args(paths.work_db, warehouse.memory_limit)
    invocation = run_dbt(dbt, args, context, target, partial_parse=paths.dbt_parse_state)
    yield from invocation.stream()
    keep_state(target, paths.dbt_parse_state)
    if not invocation.is_successful():
        results = invocation.get_artifact("run_results.json").get("results", [])
        errors = _failed(results, ("model", "seed"), "error")
        if not errors:  # the models were built, data tests failed: each is named by its asset check
            tests = _failed(results, ("test",), "fail") + _failed(results, ("test",), "error")
            raise DbtBuildFailed(f"dbt tests failed: {', '.join(name for name, _ in tests) or 'see the run log'}")
        seeds = _failed(results, ("seed",), "error")  # a label file of the project, not an inbox file
        if seeds or any(kind in errors[0][1] for kind in ("Compilation Error", "Parsing Error", "Catalog Error")):
            name, message = (seeds or errors)[0]
            raise DbtBuildFailed(f"dbt could not build {name} (a fault in the dbt project): {message[:300]}")
        with warehouse.connect(read_only=True) as con:
            raise DbtBuildFailed(_explain(errors, _suspects(con, registry)))


def _failed(results: list[dict], kinds: tuple[str, ...], status: str) -> list[tuple[str, str]]:
    """(name, dbt's message) of every node of these kinds with this status in run_results.json."""
    return [
        (r["unique_id"].split(".")[2], " ".join((r.get("message") or "").split()))
        for r in results
        if r.get("status") == status and r["unique_id"].split(".")[0] in kinds
    ]


def _suspects(con, registry: Registry) -> list[str]:
    """Where the stored rows are unfit: '<table>.<column> from <file> (<n> rows)'; else the newest loaded files."""
    unfit = [
        f"raw.{c.raw_table}.{column} from {file} ({rows} rows)"
        for c in registry.contracts.values()
        if has_table(con, "raw", c.raw_table)
        for column, file, rows in unfit_raw_rows(con, c)
    ]
    if unfit:
        return unfit
    newest = con.execute(
        "select file_name from audit.file_loads where status = 'loaded' order by load_id desc limit 3"
    ).fetchall()
    return [f"rows loaded last, from {f}" for (f,) in newest]


def _explain(errors: list[tuple[str, str]], suspects: list[str]) -> str:
    model, message = errors[0]
    message = message.split(" LINE ")[0]  # DuckDB appends the SQL around the fault; the model names it
    where = "; ".join(suspects) or "no stored rows to suspect"
    return (
        f"dbt could not build model {model}: {message[:300]}. Suspect: {where}. "
        "Take a file's rows out with `care-outcomes retract FILE`, then refresh again"
    )


def mart_keys(dbt_assets_def: AssetsDefinition) -> list[AssetKey]:
    """The asset keys of the marts (the dbt models of schema marts)."""
    return [key for key in dbt_assets_def.keys if key.path[0] == "marts"]
