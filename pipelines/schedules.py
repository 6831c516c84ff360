"""When the refresh runs by itself: every night at 02:00 Amsterdam time, and when new files arrive."""

import hashlib
import json

from dagster import DefaultScheduleStatus, DefaultSensorStatus, RunRequest, ScheduleDefinition, SensorEvaluationContext, SkipReason, sensor

from pipelines.ingest.load import inbox_files
from pipelines.jobs import refresh_job
from pipelines.registry import load_registry
from pipelines.resources import WarehouseResource

nightly_refresh = ScheduleDefinition(
    name="nightly_refresh",
    job=refresh_job,
    cron_schedule="0 2 * * *",
    execution_timezone="Europe/Amsterdam",
    default_status=DefaultScheduleStatus.RUNNING,
    description="The nightly refresh, so the marts are fresh when BI tools read them in the morning.",
)


def inbox_snapshot(warehouse: WarehouseResource) -> dict[str, list[int]]:
    """Every file of every source folder: inbox path -> [size, mtime in ns]. Cheap: no file is read."""
    inbox = warehouse.paths().inbox
    snapshot = {}
    for source in load_registry().sources.values():
        for path in inbox_files(inbox, source):  # exactly the files the ingest will read
            stat = path.stat()
            snapshot[f"{source.folder}/{path.name}"] = [stat.st_size, stat.st_mtime_ns]
    return snapshot


def new_files(snapshot: dict[str, list[int]], cursor: str | None) -> list[str]:
    """Files that were not in the cursor's snapshot, or changed since."""
    seen = json.loads(cursor) if cursor else {}
    return sorted(name for name, signature in snapshot.items() if seen.get(name) != signature)


@sensor(
    name="inbox_sensor",
    job=refresh_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Starts a refresh when files arrive in (or change in) a source folder of the inbox; "
    "its cursor remembers every file seen with its size and modification time.",
)
def inbox_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource):
    snapshot = inbox_snapshot(warehouse)
    arrived = new_files(snapshot, context.cursor)
    context.update_cursor(json.dumps(snapshot, sort_keys=True))
    if not arrived:
        return SkipReason("no new files in the inbox")
    run_key = hashlib.sha256(json.dumps({n: snapshot[n] for n in arrived}, sort_keys=True).encode()).hexdigest()[:16]
    return RunRequest(run_key=run_key, tags={"care_outcomes/new_files": str(len(arrived))})
