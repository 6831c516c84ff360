"""The refresh job: ingest every inbox folder, dbt build, checks, publish."""

from dagster import AssetSelection, define_asset_job, in_process_executor

REFRESH_JOB_NAME = "refresh"

refresh_job = define_asset_job(
    name=REFRESH_JOB_NAME,
    selection=AssetSelection.all() - AssetSelection.groups("inbox"),
    description="One full refresh: ingest the inbox, dbt build (models + data tests), quality checks, publish the serving file.",
    # DuckDB allows one writing process: the steps of a run go one after another, in one process
    executor_def=in_process_executor,
    # at most one refresh run at a time: deploy/dagster.yaml limits runs with this tag to 1
    tags={"care_outcomes/warehouse": "writer"},
)
