"""When and how the refresh runs: the job, the nightly schedule, the inbox sensor, and what a finished run says."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    ExecuteInProcessResult,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    run_failure_sensor,
    run_status_sensor,
    schedule,
    sensor,
)

from pipelines.ingest.load import FileLoad
from pipelines.ingest.registry import Registry
from pipelines.news import inbox_news, inbox_snapshot, new_files
from pipelines.quality.checks import severity_of
from pipelines.reporting.assets import IPS_REPORTS_KEY, REPORTS_LINE
from pipelines.resources import WarehouseResource
from pipelines.serving.assets import POSTGRES_KEY, POSTGRES_LINE, ROWS_PER_MART, SERVING_KEY
from pipelines.serving.postgres import dsn_from
from pipelines.serving.publish import NEWS_TAG, outputs_wanted
from pipelines.warehouse import storage_fault

REFRESH_JOB_NAME = "refresh"
WRITER_TAG = "care_outcomes/warehouse"
STARTED_BY_TAG = "care_outcomes/started_by"  # "cli" on runs of `care-outcomes refresh`, which alert themselves

refresh_job = define_asset_job(
    name=REFRESH_JOB_NAME,
    selection=AssetSelection.all() - AssetSelection.groups("inbox"),
    description="One full refresh: ingest the inbox, dbt build (models + data tests), quality checks, "
    "publish the serving file, make the feedback reports.",
    # DuckDB allows one writing process: the steps of a run go one after another, in one process
    executor_def=in_process_executor,
    # at most one refresh run at a time: deploy/dagster.yaml limits runs with this tag to 1
    tags={WRITER_TAG: "writer"},
)


def build_nightly_schedule(registry: Registry) -> ScheduleDefinition:
    """Every night at 02:00 Amsterdam time, unless nothing changed since the last publish."""

    @schedule(
        name="nightly_refresh",
        job=refresh_job,
        cron_schedule="0 2 * * *",
        execution_timezone="Europe/Amsterdam",
        default_status=DefaultScheduleStatus.RUNNING,
        description="The nightly refresh, so the marts are fresh when BI tools read them in the morning; "
        "skipped when nothing changed since the last publish.",
    )
    def nightly_refresh(context: ScheduleEvaluationContext, warehouse: WarehouseResource):
        signature, unchanged_since = inbox_news(warehouse.paths(), registry, outputs_wanted(dsn_from(None)))
        if unchanged_since is not None:
            return SkipReason(
                f"nothing new since the refresh published at {unchanged_since:%Y-%m-%d %H:%M}; marts unchanged"
            )
        return RunRequest(tags={NEWS_TAG: signature})

    return nightly_refresh


def build_inbox_sensor(registry: Registry) -> SensorDefinition:
    """The sensor watching the folders of the registry's sources."""

    @sensor(
        name="inbox_sensor",
        job=refresh_job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description="Starts a refresh when files arrive in (or change in) a source folder of the inbox; "
        "its cursor remembers every file seen with its size and modification time.",
    )
    def inbox_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource):
        snapshot = inbox_snapshot(registry, warehouse.paths().inbox)
        arrived = new_files(snapshot, context.cursor)
        context.update_cursor(json.dumps(snapshot, sort_keys=True))
        if not arrived:
            return SkipReason("no new files in the inbox")
        signature = json.dumps({n: snapshot[n] for n in arrived}, sort_keys=True).encode()
        news, _ = inbox_news(warehouse.paths(), registry, outputs_wanted(dsn_from(None)))
        return RunRequest(
            run_key=hashlib.sha256(signature).hexdigest()[:16],
            tags={"care_outcomes/new_files": str(len(arrived)), NEWS_TAG: news},
        )

    return inbox_sensor


# --- what a finished run says ------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check of a run: a dbt data test or a Great Expectations suite."""

    asset: str
    name: str
    passed: bool
    severity: str  # ERROR blocks, WARN informs
    detail: str

    @property
    def label(self) -> str:
        """'<table>: <check> (<severity>): <what failed, with example rows>' for the summary."""
        return f"{self.asset}: {self.name} ({self.severity}): {self.detail}"


@dataclass(frozen=True)
class RunOutcome:
    """What one refresh run did: the files it decided, its checks, and what it published."""

    files: list[FileLoad] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    rows_per_mart: dict[str, int] | None = None  # None: nothing was published
    reports: str | None = None  # the summary line of the reports made after the publish
    postgres: str | None = None  # the summary line of the PostgreSQL publish, where one is configured
    failed_steps: dict[str, str] = field(default_factory=dict)  # step key -> root cause, for every failed step
    step_failure: str | None = None
    fault: str | None = None  # an operational fault (disk, folder, database) rather than the data
    interrupted: bool = False  # a step was interrupted (Ctrl-C, SIGINT)
    run_id: str | None = None

    @property
    def exit_code(self) -> int:
        """0 published; 1 published without every output after it, or nothing published (data); 2 a fault."""
        if self.published:
            return 0 if self.step_failure is None else 1
        return 2 if self.fault else 1

    @property
    def published(self) -> bool:
        return self.rows_per_mart is not None

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed and c.severity != "WARN"]

    @property
    def warnings(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed and c.severity == "WARN"]

    @property
    def failure(self) -> str | None:
        """The root cause when nothing was published."""
        if self.published:
            return None
        if self.failed_checks:
            return f"blocking check failed: {self.failed_checks[0].label}"
        return self.step_failure or "the run did not reach the publish step"

    @classmethod
    def of(cls, result: ExecuteInProcessResult, files: list[FileLoad], warehouse: Path) -> RunOutcome:
        return cls.of_events(result.all_events, files, warehouse, result.run_id)

    @classmethod
    def of_events(cls, events: list, files: list, warehouse: Path, run_id: str | None = None) -> RunOutcome:
        """From a run's Dagster events: those of a run in this process, or those the instance keeps of any run."""
        checks = [_check_outcome(e.asset_check_evaluation_data) for e in events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]  # fmt: skip
        # published: the serving asset was materialized (the reports after it may still have failed)
        rows = _materialized(events, SERVING_KEY, ROWS_PER_MART)
        after = {
            "reports": _materialized(events, IPS_REPORTS_KEY, REPORTS_LINE),
            "postgres": _materialized(events, POSTGRES_KEY, POSTGRES_LINE),
        }
        failures = _failures(events)
        failed_steps = {step: f"{where}: {message}" for step, (where, _cls, message) in failures.items()}
        failure = next(iter(failures.values()), None)
        if failure is None:
            return cls(files=files, checks=checks, rows_per_mart=rows, **after, run_id=run_id)
        where, cls_name, message = failure
        fault = storage_fault(RuntimeError(message), warehouse.parent)
        if fault is not None:
            message = str(fault)
        is_fault = fault is not None or cls_name in ("WarehouseFault", "WarehouseBusy")
        interrupted = any(c in INTERRUPTIONS for _, c, _ in failures.values())
        return cls(
            interrupted=interrupted,
            files=files,
            checks=checks,
            rows_per_mart=rows,
            **after,
            failed_steps=failed_steps,
            step_failure=f"{where}: {message}",
            fault=f"{where}: {message}" if is_fault else None,
            run_id=run_id,
        )


INTERRUPTIONS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def _materialized(events: list, key: AssetKey, name: str):
    """A metadata value of the asset's materialization in this run, or None where it was not materialized."""
    made = [e for e in events if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == key]
    return made[0].step_materialization_data.materialization.metadata[name].value if made else None


def _check_outcome(evaluation) -> CheckOutcome:
    meta = evaluation.metadata or {}
    if evaluation.description:
        detail = evaluation.description
    elif "dagster_dbt/failed_row_count" in meta:
        detail = f"{meta['dagster_dbt/failed_row_count'].value} failing rows"
    else:
        detail = "failed"
    return CheckOutcome(
        asset=evaluation.asset_key.to_user_string(),
        name=evaluation.check_name,
        passed=bool(evaluation.passed),
        severity=severity_of(evaluation),
        detail=detail,
    )


def _failures(events: list) -> dict[str, tuple[str, str, str]]:
    """Step key (or 'run') -> (where, exception class, message) of the root cause of every failure, in order: the
    exception a step or a resource raised, not Dagster's wrapper around it."""
    out = {}
    for event in events:
        if event.event_type_value == "STEP_FAILURE":
            where, error = f"step {event.step_key} failed", event.step_failure_data.error
        elif event.event_type_value == "RESOURCE_INIT_FAILURE":
            where, error = "the run could not start", event.event_specific_data.error
        else:
            continue
        while error is not None and error.cause is not None:
            error = error.cause
        step = event.step_key or "run"
        if error is None:
            out[step] = (where, "", "unknown error")
            continue
        lines = [line for line in error.message.strip().splitlines() if line.strip()] or ["unknown error"]
        # "pipelines.warehouse.WarehouseFault: cannot write ..." -> "cannot write ..."
        message = re.sub(rf"^[\w.]*{re.escape(error.cls_name or '')}: ", "", lines[0])
        out[step] = (where, error.cls_name or "", message)
    return out


# ---- alerts for runs the daemon started (the schedule, the inbox sensor, the UI) -------------------------------


def decided_files(events: list) -> list[FileLoad]:
    """The files a run decided, from its ingest assets' materializations (metadata ``decided``)."""
    out = []
    for e in events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            decided = e.step_materialization_data.materialization.metadata.get("decided")
            for f in decided.value if decided is not None else []:
                out.append(FileLoad(f["file_name"], f["source"], f["status"], rows_loaded=0, error=None, sha256=""))
    return out


def alert_for_run(run, instance, paths) -> list[str]:
    """Send the alert of a finished refresh run that the command line did not start (it alerts itself)."""
    import duckdb

    from pipelines import alerts

    if run.tags.get(STARTED_BY_TAG) == "cli" or not alerts.configured():
        return []
    events = [r.dagster_event for r in instance.all_logs(run.run_id) if r.dagster_event is not None]
    outcome = RunOutcome.of_events(events, decided_files(events), paths.warehouse, run.run_id)
    missing = []
    if outcome.published and paths.warehouse.exists():
        from pipelines.cli import missing_latest_quarter

        with duckdb.connect(str(paths.warehouse), read_only=True) as con:
            missing = missing_latest_quarter(con)
    schedule_name, sensor_name = run.tags.get("dagster/schedule_name"), run.tags.get("dagster/sensor_name")
    started_by = (
        f"schedule {schedule_name}" if schedule_name else f"sensor {sensor_name}" if sensor_name else "Dagster UI"
    )
    alert = alerts.alert_of_outcome(outcome, warehouse=paths.warehouse, missing=missing, started_by=started_by)
    return alerts.deliver(alert)


def build_alert_sensors() -> list[SensorDefinition]:
    """A run-failure sensor and a run-success sensor (for nights published with problems) on the refresh job."""

    def send(context, warehouse: WarehouseResource) -> None:
        for line in alert_for_run(context.dagster_run, context.instance, warehouse.paths()):
            context.log.info(line)

    @run_failure_sensor(
        name="alert_on_failed_night",
        monitored_jobs=[refresh_job],
        default_status=DefaultSensorStatus.RUNNING,
        description="Alerts (webhook, e-mail) when a refresh run started by the schedule, the sensor or the UI fails.",
    )
    def alert_on_failed_night(context: RunFailureSensorContext, warehouse: WarehouseResource):
        send(context, warehouse)

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        name="alert_on_degraded_night",
        monitored_jobs=[refresh_job],
        default_status=DefaultSensorStatus.RUNNING,
        description="Alerts when a refresh run published, but quarantined a file, warned, or misses a submission.",
    )
    def alert_on_degraded_night(context: RunStatusSensorContext, warehouse: WarehouseResource):
        send(context, warehouse)

    return [alert_on_failed_night, alert_on_degraded_night]
