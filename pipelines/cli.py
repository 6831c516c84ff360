"""`care-outcomes refresh`: one full refresh from the command line, the Dagster job run in-process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.warehouse import Paths, resolve_paths

if TYPE_CHECKING:
    from pipelines.orchestration import RunOutcome


@dataclass
class RefreshReport:
    """A refresh's summary for the terminal."""

    paths: Paths
    outcome: RunOutcome

    def lines(self) -> list[str]:
        out = [f"inbox:     {self.paths.inbox}"]
        by_status = {
            s: [f for f in self.outcome.files if f.status == s] for s in ("loaded", "quarantined", "duplicate")
        }
        out.append(
            f"files:     {len(by_status['loaded'])} loaded ({sum(f.rows_loaded for f in by_status['loaded'])} rows), "
            f"{len(by_status['quarantined'])} quarantined, {len(by_status['duplicate'])} duplicate"
        )
        out += [f"  quarantined: {f.error}" for f in by_status["quarantined"]]
        out += [f"  duplicate: {f.file_name}: {f.error}" for f in by_status["duplicate"]]
        if self.outcome.rows_per_mart:
            out.append("marts:     " + ", ".join(f"{k} {v}" for k, v in self.outcome.rows_per_mart.items()))
        failed, warned = self.outcome.failed_checks, self.outcome.warnings
        out.append(f"checks:    {len(self.outcome.checks)} run, {len(failed)} failed, {len(warned)} warnings")
        out += [f"  failed: {c.label}" for c in failed]
        out += [f"  warning: {c.label}" for c in warned]
        out.append(f"run log:   {self.paths.log_file}")
        if self.outcome.published:
            out.append(f"published: {self.paths.warehouse} (Parquet: {self.paths.parquet_dir})")
        else:
            out.append(
                f"refresh failed: {self.outcome.failure}; the served marts stay as they were ({self.paths.warehouse})"
            )
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


@contextmanager
def reading(paths: Paths):
    """A read-only connection to the working database, or None before the first refresh."""
    import duckdb

    if not paths.work_db.exists():
        yield None
        return
    con = duckdb.connect(str(paths.work_db), read_only=True)
    try:
        yield con
    finally:
        con.close()


def refresh(paths: Paths, verbose: bool = False, dbt_project_dir: Path | None = None) -> RefreshReport:
    """Run ingest, dbt build, checks and publish once, as the Dagster job `refresh` in this process."""
    from dagster import DagsterInstance

    from pipelines.definitions import build_defs
    from pipelines.ingest.load import last_load_id, loads_after
    from pipelines.ingest.pseudonymise import require_key_for
    from pipelines.orchestration import REFRESH_JOB_NAME, RunOutcome
    from pipelines.transform.project import DBT_DIR, dbt_project_for, ensure_manifest
    from pipelines.warehouse import writer_lock

    require_key_for(paths.inbox)
    project_dir = dbt_project_dir or DBT_DIR
    with writer_lock(paths):
        ensure_manifest(dbt_project_for(project_dir, prepare=False))
        job = build_defs(paths, project_dir).resolve_job_def(REFRESH_JOB_NAME)
        with reading(paths) as con:
            before = last_load_id(con) if con else 0
        instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
        paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        with paths.log_file.open("w", encoding="utf-8") as log, quiet(log, verbose):
            result = job.execute_in_process(instance=instance, raise_on_error=False)
        with reading(paths) as con:
            files = loads_after(con, before) if con else []
    return RefreshReport(paths, RunOutcome.of(result, files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="care-outcomes", description="Outcome figures for day-care and IPS programmes."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("refresh", help="ingest the inbox, build and check the marts, publish the serving file")
    run.add_argument("--inbox", help="inbox folder (default: $CARE_OUTCOMES_INBOX or data/sample)")
    run.add_argument(
        "--warehouse", help="serving DuckDB file (default: $CARE_OUTCOMES_WAREHOUSE or warehouse/care_outcomes.duckdb)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's and dbt's own log lines")
    run.add_argument(
        "--dbt-project", metavar="DIR", help="build with another copy of the dbt project (developing models)"
    )
    args = parser.parse_args(argv)

    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)  # the shell's environment wins, as with `dagster dev`

    from pipelines.ingest.pseudonymise import MissingKey
    from pipelines.ingest.registry import RegistryError
    from pipelines.transform.project import DbtParseError
    from pipelines.warehouse import WarehouseBusy

    paths = resolve_paths(args.inbox, args.warehouse)
    try:
        report = refresh(paths, args.verbose, Path(args.dbt_project).resolve() if args.dbt_project else None)
    except (MissingKey, RegistryError, DbtParseError, WarehouseBusy) as exc:
        print(f"refresh failed: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0 if report.outcome.published else 1


if __name__ == "__main__":
    sys.exit(main())
