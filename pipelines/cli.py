"""`care-outcomes refresh`: one full refresh from the command line, the Dagster job run in-process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.settings import Paths, resolve_paths


@dataclass
class RefreshReport:
    paths: Paths
    files: list[tuple] = field(default_factory=list)  # (file_name, status, rows_loaded, error)
    rows_per_mart: dict[str, int] = field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    checks_warned: list[str] = field(default_factory=list)
    published: bool = False
    failure: str | None = None

    @property
    def log_file(self) -> Path:
        return self.paths.warehouse.parent / "logs" / "last_refresh.log"

    def lines(self) -> list[str]:
        out = [f"inbox:     {self.paths.inbox}"]
        by_status = {s: [f for f in self.files if f[1] == s] for s in ("loaded", "quarantined", "duplicate")}
        out.append(
            f"files:     {len(by_status['loaded'])} loaded ({sum(f[2] for f in by_status['loaded'])} rows), "
            f"{len(by_status['quarantined'])} quarantined, {len(by_status['duplicate'])} duplicate"
        )
        for name, _, _, error in by_status["quarantined"]:
            out.append(f"  quarantined: {error}")
        for name, _, _, error in by_status["duplicate"]:
            out.append(f"  duplicate: {name}: {error}")
        if self.rows_per_mart:
            out.append("marts:     " + ", ".join(f"{k} {v}" for k, v in self.rows_per_mart.items()))
        run = self.checks_passed + len(self.checks_failed) + len(self.checks_warned)
        out.append(f"checks:    {run} run, {len(self.checks_failed)} failed, {len(self.checks_warned)} warnings")
        for failed in self.checks_failed:
            out.append(f"  failed: {failed}")
        for warned in self.checks_warned:
            out.append(f"  warning: {warned}")
        out.append(f"run log:   {self.log_file}")
        if self.published:
            out.append(f"published: {self.paths.warehouse} (Parquet: {self.paths.parquet_dir})")
        else:
            out.append(f"refresh failed: {self.failure}; the served marts stay as they were ({self.paths.warehouse})")
        return out


@contextmanager
def quiet(log, verbose: bool):
    """Dagster's and dbt's own lines (dagster-dbt re-emits every dbt line on stdout) go to the run log."""
    if verbose:
        yield
        return
    handlers = [h for h in logging.getLogger("dagster").handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.setStream(log) for h in handlers]
    try:
        with redirect_stdout(log), redirect_stderr(log):
            yield
    finally:
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)


def _max_load_id(paths: Paths) -> int:
    import duckdb

    if not paths.work_db.exists():
        return 0
    con = duckdb.connect(str(paths.work_db), read_only=True)
    try:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'audit' and table_name = 'file_loads'"
        ).fetchall()[0][0]
        return con.execute("select coalesce(max(load_id), 0) from audit.file_loads").fetchall()[0][0] if exists else 0
    finally:
        con.close()


def _new_loads(paths: Paths, after: int) -> list[tuple]:
    import duckdb

    if not paths.work_db.exists():
        return []
    con = duckdb.connect(str(paths.work_db), read_only=True)
    try:
        return con.execute(
            "select file_name, status, rows_loaded, error from audit.file_loads where load_id > ? order by load_id", [after]
        ).fetchall()
    except duckdb.CatalogException:
        return []
    finally:
        con.close()


def _check_label(evaluation) -> str:
    """'<table>: <check> (<severity>): <what failed, with example rows>' for the summary."""
    meta = evaluation.metadata or {}
    if evaluation.description:
        detail = evaluation.description
    elif "dagster_dbt/failed_row_count" in meta:
        detail = f"{meta['dagster_dbt/failed_row_count'].value} failing rows"
    else:
        detail = "failed"
    severity = evaluation.severity.value if evaluation.severity else "ERROR"
    return f"{evaluation.asset_key.to_user_string()}: {evaluation.check_name} ({severity}): {detail}"


def _step_failure(result) -> str | None:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = (error.message if error else "unknown error").strip().splitlines()[0]
            return f"step {event.step_key} failed: {message}"
    return None


def refresh(inbox: str | None = None, warehouse: str | None = None, verbose: bool = False,
            dbt_project_dir: str | None = None) -> RefreshReport:
    """Run ingest, dbt build, checks and publish once; return what happened."""
    from dagster import DagsterInstance

    from pipelines.dbt_project import dbt_project_for, ensure_manifest
    from pipelines.pseudonymise import require_key_for
    from pipelines.resources import writer_lock

    paths = resolve_paths(inbox, warehouse)
    report = RefreshReport(paths)
    os.environ["CARE_OUTCOMES_INBOX"] = str(paths.inbox)
    os.environ["CARE_OUTCOMES_WAREHOUSE"] = str(paths.warehouse)
    require_key_for(paths.inbox)
    with writer_lock(paths):
        ensure_manifest()
        if dbt_project_dir:
            ensure_manifest(dbt_project_for(Path(dbt_project_dir).resolve()))
        from pipelines.definitions import build_defs, defs
        from pipelines.jobs import REFRESH_JOB_NAME

        if dbt_project_dir:
            defs = build_defs(Path(dbt_project_dir).resolve())

        before = _max_load_id(paths)
        job = defs.resolve_job_def(REFRESH_JOB_NAME)
        instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
        report.log_file.parent.mkdir(parents=True, exist_ok=True)
        with report.log_file.open("w", encoding="utf-8") as log, quiet(log, verbose):
            result = job.execute_in_process(instance=instance, raise_on_error=False)
        report.files = _new_loads(paths, before)
        for evaluation in result.get_asset_check_evaluations():
            if evaluation.passed:
                report.checks_passed += 1
            elif evaluation.severity and evaluation.severity.value == "WARN":
                report.checks_warned.append(_check_label(evaluation))
            else:
                report.checks_failed.append(_check_label(evaluation))
        materialized = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
        serving = materialized.get("serving/care_outcomes")
        if result.success and serving is not None:
            report.published = True
            report.rows_per_mart = serving.materialization.metadata["rows_per_mart"].value
        elif report.checks_failed:
            report.failure = f"blocking check failed: {report.checks_failed[0]}"
        else:
            report.failure = _step_failure(result) or "the run did not reach the publish step"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="care-outcomes", description="Outcome figures for day-care and IPS programmes.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("refresh", help="ingest the inbox, build and check the marts, publish the serving file")
    run.add_argument("--inbox", help="inbox folder (default: $CARE_OUTCOMES_INBOX or data/sample)")
    run.add_argument("--warehouse", help="serving DuckDB file (default: $CARE_OUTCOMES_WAREHOUSE or warehouse/care_outcomes.duckdb)")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's and dbt's own log lines")
    run.add_argument("--dbt-project", metavar="DIR", help="build with another copy of the dbt project (developing models)")
    args = parser.parse_args(argv)

    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)  # the shell's environment wins, as with `dagster dev`

    from pipelines.dbt_project import DbtParseError
    from pipelines.pseudonymise import MissingKey
    from pipelines.registry import RegistryError
    from pipelines.resources import WarehouseBusy

    try:
        report = refresh(args.inbox, args.warehouse, args.verbose, args.dbt_project)
    except (MissingKey, RegistryError, DbtParseError, WarehouseBusy) as exc:
        print(f"refresh failed: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0 if report.published else 1


if __name__ == "__main__":
    sys.exit(main())
