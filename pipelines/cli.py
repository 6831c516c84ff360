"""`care-outcomes`: the refresh (the Dagster job run in this process) and the commands a person repairs with.

    care-outcomes refresh [--inbox DIR] [--warehouse FILE] [--force] [--rebuild] [-v]
    care-outcomes files   [--warehouse FILE] [--inbox DIR]
    care-outcomes retry   [FILE ...] [--inbox DIR] [--warehouse FILE]
    care-outcomes retract FILE [--warehouse FILE]
    care-outcomes erase --client-id ID|- [--source NAME] [--inbox DIR] [--warehouse FILE]
    care-outcomes report ips --program ID [--years 2017 2018] [--out DIR] [--warehouse FILE]
    care-outcomes postgres-grant --program ID --role NAME [--postgres DSN]
    care-outcomes postgres-grant --centre LOGIN [--postgres DSN]
    care-outcomes backup DIR [--warehouse FILE]
    care-outcomes restore DIR --warehouse FILE [--force]
    care-outcomes report outflow --provider NAME [--year 2023] [--out DIR] [--min-count N] [--warehouse FILE]
    care-outcomes report national [--period 2018-K3] [--out DIR] [--warehouse FILE]

Exit codes: 0 done; 1 a refresh ran but published nothing (a blocking check failed, the build broke);
2 it could not run (settings, inbox, warehouse, another refresh, a repair that cannot be done); 130 interrupted
(Ctrl-C: one line says what was published).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.warehouse import Paths, resolve_paths, shown

if TYPE_CHECKING:
    from pipelines.orchestration import RunOutcome


@dataclass
class RefreshReport:
    """A refresh's summary for the terminal."""

    paths: Paths
    outcome: RunOutcome
    waiting: int = 0  # quarantined files still in the inbox
    moved_aside: Path | None = None  # --rebuild: where the previous working database went
    missing_latest: list[str] | None = None  # programmes that have not sent the latest quarter
    erased_dropped: int = 0  # rows of erased clients the files of this run held, dropped on ingest
    retention: str | None = None  # what the retention setting removed in this run

    def lines(self) -> list[str]:
        out = [f"inbox:     {self.paths.inbox}"]
        if self.moved_aside:
            out.append(f"rebuilt:   the previous working database was moved to {self.moved_aside}")
        by_status = {
            s: [f for f in self.outcome.files if f.status == s]
            for s in ("loaded", "quarantined", "duplicate", "skipped")
        }
        skipped = f", {len(by_status['skipped'])} skipped" if by_status["skipped"] else ""
        out.append(
            f"files:     {len(by_status['loaded'])} loaded ({sum(f.rows_loaded for f in by_status['loaded'])} rows), "
            f"{len(by_status['quarantined'])} quarantined, {len(by_status['duplicate'])} duplicate{skipped}"
        )
        out += [f"  quarantined: {shown(f.error)}" for f in by_status["quarantined"]]
        out += [f"  duplicate: {shown(f.file_name)}: {shown(f.error)}" for f in by_status["duplicate"]]
        out += [f"  skipped: {shown(f.error)}" for f in by_status["skipped"]]
        out.append(quarantine_line(self.waiting))
        if self.erased_dropped:
            out.append(f"erased:    {self.erased_dropped} rows dropped (of clients erased on request)")
        if self.retention:
            out.append(self.retention)
        if self.outcome.rows_per_mart:
            out.append("marts:     " + ", ".join(f"{k} {v}" for k, v in self.outcome.rows_per_mart.items()))
        if self.missing_latest:
            out.append(f"missing:   latest quarter not received from {', '.join(self.missing_latest)}")
        failed, warned = self.outcome.failed_checks, self.outcome.warnings
        out.append(f"checks:    {len(self.outcome.checks)} run, {len(failed)} failed, {len(warned)} warnings")
        out += [f"  failed: {c.label}" for c in failed]
        out += [f"  warning: {c.label}" for c in warned]
        out.append(f"run log:   {self.paths.log_file}")
        if self.outcome.published:
            out.append(f"published: {self.paths.warehouse} (Parquet: {self.paths.parquet_dir})")
            from pipelines.reporting.assets import REPORTS_STEP
            from pipelines.serving.assets import POSTGRES_STEP

            failed = self.outcome.failed_steps
            if self.outcome.reports:
                out.append(self.outcome.reports)
            elif failed:
                cause = failed.get(REPORTS_STEP, self.outcome.step_failure)
                out.append(
                    f"reports:   not made: {cause}; the reports of the night before stay ({self.paths.reports_dir})"
                )
            if self.outcome.postgres:
                out.append(self.outcome.postgres)
            elif POSTGRES_STEP in failed:
                out.append(f"postgres:  not published: {failed[POSTGRES_STEP]}; PostgreSQL keeps the marts it served")
        else:
            out.append(
                f"refresh failed: {self.outcome.failure}; the served marts stay as they were ({self.paths.warehouse})"
            )
        return out

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


def quarantine_line(waiting: int) -> str:
    """The summary line on quarantined files still in the inbox."""
    if not waiting:
        return "quarantine: no file waits"
    return (
        f"quarantine: {waiting} file(s) wait for a corrected file or `care-outcomes retry` "
        "(`care-outcomes files` lists them)"
    )


@contextmanager
def quiet(log, verbose: bool):
    """Dagster's and dbt's own lines (dagster-dbt re-emits every dbt line on stdout) go to the run log, and so does
    whatever the processes the run starts write to their standard output and error (Dagster's helpers print a
    traceback when a Ctrl-C reaches them): the terminal gets the summary only."""
    if verbose:
        yield
        return
    handlers = [h for h in logging.getLogger("dagster").handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.setStream(log) for h in handlers]
    for stream in (sys.stdout, sys.stderr, log):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        with redirect_stdout(log), redirect_stderr(log):
            yield
    finally:
        log.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)


class Interrupted(Exception):
    """The refresh was interrupted (Ctrl-C); the message says what was published."""


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


@contextmanager
def writing(paths: Paths):
    """The working database opened for a repair, under the writer lock (no refresh runs meanwhile)."""
    import duckdb

    from pipelines.warehouse import WarehouseFault, writer_lock

    if not paths.work_db.exists():
        raise WarehouseFault(f"{paths.warehouse} has no working database yet: run `care-outcomes refresh` first")
    with writer_lock(paths):
        con = duckdb.connect(str(paths.work_db))
        try:
            yield con
        finally:
            con.close()


@dataclass
class NothingNew:
    """A night without news: no file arrived or changed, no repair was asked, the dbt project is as it was."""

    paths: Paths
    since: object  # when the served marts were published
    waiting: int = 0
    exit_code: int = 0

    def lines(self) -> list[str]:
        return [
            f"inbox:     {self.paths.inbox}",
            quarantine_line(self.waiting),
            f"nothing new since the refresh published at {self.since:%Y-%m-%d %H:%M:%S}; marts unchanged "
            f"({self.paths.warehouse}; `--force` refreshes anyway)",
        ]


def refresh(
    paths: Paths,
    verbose: bool = False,
    dbt_project_dir: Path | None = None,
    rebuild: bool = False,
    force: bool = False,
    postgres_dsn: str | None = None,
) -> RefreshReport | NothingNew:
    """Run ingest, dbt build, checks and publish once, as the Dagster job `refresh` in this process; or nothing,
    when nothing changed since the last publish (unless ``force``)."""
    from data_quality import worker
    from pipelines.transform import worker as dbt_worker

    worker.prestart()  # Great Expectations loads in its own process while this one loads Dagster
    try:
        return _refresh(paths, verbose, dbt_project_dir, rebuild, force, postgres_dsn)
    finally:
        worker.discard_prestarted()  # a night with nothing new, or a run that did not start
        dbt_worker.discard_prestarted()  # the dbt worker, after its command or unused


def _refresh(
    paths: Paths,
    verbose: bool,
    dbt_project_dir: Path | None,
    rebuild: bool,
    force: bool,
    postgres_dsn: str | None,
) -> RefreshReport | NothingNew:
    # what can say no (a bad setting, a missing key) or "nothing new" comes first, before Dagster and dbt are loaded
    from pipelines.alerts import check_settings
    from pipelines.ingest.load import check_inbox, last_load_id, loads_after, waiting_in_quarantine
    from pipelines.ingest.pseudonymise import current_key
    from pipelines.ingest.registry import load_registry
    from pipelines.news import inbox_news
    from pipelines.privacy import check_key, key_fingerprint, retention_years
    from pipelines.serving.publish import NEWS_TAG, forget_publish, outputs_wanted, remove_leftovers
    from pipelines.transform.project import DBT_DIR, dbt_project_for, ensure_manifest
    from pipelines.warehouse import prepare_warehouse, storage_fault, writer_lock

    check_settings()  # an alert setting that could never deliver stops the night before it starts
    registry = load_registry(paths.sources_dirs)
    check_inbox(paths.inbox, registry)
    fingerprint = key_fingerprint(current_key(paths.inbox))  # refuses a real inbox without a key
    retention_years()  # a setting it cannot use stops the refresh here
    project_dir = dbt_project_dir or DBT_DIR
    with writer_lock(paths):
        # another key than the warehouse's: stop before anything is read or loaded (a rebuild moves to a new key)
        check_key(paths.work_db, paths.warehouse, fingerprint, rebuild=rebuild)
        remove_leftovers(paths)
        signature, unchanged_since = inbox_news(paths, registry, outputs_wanted(postgres_dsn))
        if unchanged_since is not None and not (force or rebuild or dbt_project_dir):
            with reading(paths) as con:
                waiting = len(waiting_in_quarantine(con, paths.inbox))
            return NothingNew(paths, unchanged_since, waiting)
        from pipelines.transform import worker as dbt_worker
        from pipelines.transform.project import dbt_parse_ahead_args
        from pipelines.warehouse import memory_limit

        # dbt loads in a process of its own and parses the project for this warehouse while this one loads Dagster
        ahead = dbt_parse_ahead_args(paths.work_db, project_dir, memory_limit())
        dbt_worker.prestart(ahead, paths.dbt_parse_state)
        from dagster import DagsterInstance

        from pipelines.definitions import build_defs
        from pipelines.orchestration import REFRESH_JOB_NAME, STARTED_BY_TAG, RunOutcome

        moved = prepare_warehouse(paths, rebuild=rebuild)
        carry_over(paths, moved)
        ensure_manifest(dbt_project_for(project_dir, prepare=False))
        job = build_defs(paths, project_dir, postgres_dsn=postgres_dsn).resolve_job_def(REFRESH_JOB_NAME)
        with reading(paths) as con:
            before = last_load_id(con) if con else 0
        started = dt.datetime.now().replace(microsecond=0)
        instance = DagsterInstance.from_config(str(dagster_home(paths)))
        end_dead_runs(instance)
        prune_runs(instance)
        paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        with paths.log_file.open("w", encoding="utf-8") as log, quiet(log, verbose):
            try:
                result = job.execute_in_process(
                    instance=instance, raise_on_error=False, tags={NEWS_TAG: signature, STARTED_BY_TAG: "cli"}
                )
            except Exception as exc:  # the run could not record its events (the steps' own faults are in result)
                raise storage_fault(exc, dagster_home(paths)) or exc from None
        outcome = RunOutcome.of(result, files=[], warehouse=paths.warehouse)
        if outcome.published and outcome.failed_steps:  # the reports or PostgreSQL failed after the publish
            import duckdb

            with duckdb.connect(str(paths.work_db)) as con:
                forget_publish(con, result.run_id)
        if outcome.interrupted:
            raise Interrupted(
                f"the marts were published ({paths.warehouse}), but not every output after them; the next refresh "
                "makes them"
                if outcome.published
                else f"nothing was published; the served marts stay as they were ({paths.warehouse})"
            )
        with reading(paths) as con:
            files = loads_after(con, before) if con else []
            waiting = len(waiting_in_quarantine(con, paths.inbox)) if con else 0
            missing = missing_latest_quarter(con) if con else []
            dropped, retention = privacy_lines(con, before, started) if con else (0, None)
    return RefreshReport(paths, dataclasses.replace(outcome, files=files), waiting, moved, missing, dropped, retention)


def carry_over(paths: Paths, moved: Path | None) -> None:
    """After a rebuild: the erasure list of the database moved aside goes on in the new one (the run's warehouse
    resource binds the key, WarehouseResource.bind_key)."""
    if moved is None:
        return
    import duckdb

    from pipelines import privacy

    with duckdb.connect(str(paths.work_db)) as con:
        privacy.carry_over(moved, con)


def privacy_lines(con, before: int, started) -> tuple[int, str | None]:
    """(rows of erased clients dropped in this run, the summary line of what retention removed in it)."""
    from pipelines.warehouse import has_table

    dropped = 0
    if has_table(con, "audit", "erasure_drops"):
        dropped = con.execute(
            "select coalesce(sum(rows_dropped), 0) from audit.erasure_drops where load_id > ?", [before]
        ).fetchall()[0][0]
    line = None
    if has_table(con, "audit", "retention"):
        removed = con.execute(
            "select coalesce(sum(rows_removed), 0), max(ended_before) from audit.retention where removed_at >= ?",
            [started],
        ).fetchall()[0]
        if removed[0]:
            line = f"retention: {removed[0]} rows that ended before {removed[1]:%Y-%m-%d} removed"
    return int(dropped), line


def missing_latest_quarter(con) -> list[str]:
    """'<programme> (<period>)' for every programme whose latest quarter is missing in marts.ips_submissions."""
    from pipelines.warehouse import has_table

    if not has_table(con, "marts", "ips_submissions"):
        return []
    return [
        f"{program} ({period})"
        for program, period in con.execute(
            "select program_id, period_code from marts.ips_submissions where status = 'missing' "
            "and year * 4 + quarter = (select max(year * 4 + quarter) from marts.ips_submissions) order by 1"
        ).fetchall()
    ]


def dagster_home(paths: Paths) -> Path:
    """DAGSTER_HOME, else the folder beside the warehouse; set up with deploy/dagster.yaml on first use, so the
    runs of the command line show in the Dagster UI (`make dev` uses the same folder)."""
    import shutil

    from pipelines.warehouse import PROJECT_ROOT

    home = Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else paths.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


def end_dead_runs(instance) -> list[str]:
    """Mark failed, and free the pool slot of, every refresh run the instance still thinks is running while its
    process is gone (killed, or the machine went down): else the pool of one keeps every later run waiting."""
    import re

    from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

    from pipelines.warehouse import process_alive

    ended = []
    running = instance.get_runs(
        RunsFilter(job_name="refresh", statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING])
    )
    for run in running:
        events = instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
        pids = [int(m.group(1)) for e in events if (m := re.search(r"\(pid: (\d+)\)", e.message or ""))]
        if pids and process_alive(pids[-1]):
            continue
        instance.report_run_failed(run, "the refresh process ended without finishing (killed?)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        ended.append(run.run_id)
    return ended


RUNS_KEPT = 100  # refresh runs kept in the Dagster instance: three months of nights, then the oldest go


def prune_runs(instance, keep: int = RUNS_KEPT) -> int:
    """Delete the oldest finished refresh runs (with their event logs) beyond ``keep``: the instance must not grow
    every night. Returns how many were deleted."""
    from dagster import DagsterRunStatus, RunsFilter

    finished = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
    runs = instance.get_runs(RunsFilter(job_name="refresh", statuses=finished))  # newest first
    for run in runs[keep:]:
        instance.delete_run(run.run_id)
    return max(len(runs) - keep, 0)


def show_files(paths: Paths) -> list[str]:
    """Every inbound file with its latest status and reason, newest decision per file name."""
    import duckdb

    from pipelines.ingest.load import file_states

    note = []
    try:
        with reading(paths) as con:
            states = file_states(con) if con else []
    except duckdb.IOException:  # a refresh is writing the working database: show what was published last
        con = duckdb.connect(str(paths.warehouse), read_only=True)
        try:
            states = file_states(con)
        finally:
            con.close()
        note = ["(a refresh is running: as published by the last refresh)"]
    if not states:
        return [f"no file has been decided yet in {paths.warehouse}"]
    out = [*note, f"{'status':<12} {'rows':>8}  {'decided':<19}  file: reason"]
    for s in states:
        status = "quarantined*" if s.retry_requested else s.status
        reason = f": {shown(s.error.removeprefix(s.file_name + ': '))}" if s.error else ""
        out.append(f"{status:<12} {s.rows_loaded:>8}  {s.decided_at:%Y-%m-%d %H:%M:%S}  {shown(s.file_name)}{reason}")
    counts = {
        k: sum(s.status == k for s in states) for k in ("loaded", "quarantined", "duplicate", "skipped", "retracted")
    }
    out.append(", ".join(f"{n} {k}" for k, n in counts.items()) + " (* = retry requested: the next refresh decides it)")
    return out


def _common(parser: argparse.ArgumentParser, inbox: bool = True) -> None:
    if inbox:
        parser.add_argument("--inbox", help="inbox folder (default: $CARE_OUTCOMES_INBOX or data/sample)")
    parser.add_argument(
        "--warehouse", help="serving DuckDB file (default: $CARE_OUTCOMES_WAREHOUSE or warehouse/care_outcomes.duckdb)"
    )


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="care-outcomes", description="Outcome figures for day-care and IPS programmes."
    )
    sub = main_parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("refresh", help="ingest the inbox, build and check the marts, publish the serving file")
    _common(run)
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's and dbt's own log lines")
    run.add_argument(
        "--dbt-project", metavar="DIR", help="build with another copy of the dbt project (developing models)"
    )
    run.add_argument("--force", action="store_true", help="refresh even when nothing changed since the last publish")
    run.add_argument(
        "--postgres",
        metavar="DSN",
        help="also publish to this PostgreSQL database (default: $CARE_OUTCOMES_POSTGRES_DSN; the variable keeps the "
        "password out of the process list)",
    )
    run.add_argument(
        "--rebuild",
        action="store_true",
        help="move the working database aside and load every file in the inbox anew (a damaged database, "
        "or a warehouse that should hold another inbox)",
    )
    _common(sub.add_parser("files", help="every inbound file with its status and reason"))
    retry = sub.add_parser("retry", help="decide quarantined files again (after the file or the YAML was fixed)")
    retry.add_argument("files", nargs="*", metavar="FILE", help="as `care-outcomes files` names them (default: all)")
    retry.add_argument("-v", "--verbose", action="store_true", help="show Dagster's and dbt's own log lines")
    _common(retry)
    retract = sub.add_parser("retract", help="take a loaded file's rows out of raw; the next refresh rebuilds")
    retract.add_argument("file", metavar="FILE", help="as `care-outcomes files` names it, e.g. outflow/export.csv")
    _common(retract, inbox=False)
    erase = sub.add_parser(
        "erase", help="erase a client (AVG): every stored row, and the client's rows in any later file; then refresh"
    )
    erase.add_argument(
        "--client-id",
        required=True,
        metavar="ID",
        help="the client id as the care system writes it; '-' reads it from standard input (kept out of shell history)",
    )
    erase.add_argument("--source", metavar="NAME", help="erase the client's rows of this source only (default: all)")
    erase.add_argument("-v", "--verbose", action="store_true", help="show Dagster's and dbt's own log lines")
    _common(erase)
    backup = sub.add_parser(
        "backup", help="a consistent, checksummed copy of the warehouse in a new folder (never the key)"
    )
    backup.add_argument("directory", type=Path, metavar="DIR", help="a new (or empty) folder")
    _common(backup, inbox=False)
    restore = sub.add_parser("restore", help="check a backup and restore it as a warehouse in a new place")
    restore.add_argument("directory", type=Path, metavar="DIR", help="the folder care-outcomes backup wrote")
    restore.add_argument("--warehouse", required=True, help="the serving file to restore to (its folder gets the rest)")
    restore.add_argument("--force", action="store_true", help="replace a warehouse that is there already")
    grant = sub.add_parser(
        "postgres-grant",
        help="a read-only PostgreSQL login for one programme (its rows and the national marts) or for the knowledge "
        "centre (every programme's rows)",
    )
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--program", metavar="ID", help="program_id, e.g. GGNET (with --role)")
    who.add_argument("--centre", metavar="LOGIN", help="a knowledge centre login (created with LOGIN if missing)")
    grant.add_argument("--role", metavar="NAME", help="the programme's role (created with LOGIN if missing)")
    grant.add_argument("--postgres", metavar="DSN", help="default: $CARE_OUTCOMES_POSTGRES_DSN")
    report = sub.add_parser("report", help="make one feedback report from the serving file (read-only)")
    kinds = report.add_subparsers(dest="kind", required=True)
    ips = kinds.add_parser("ips", help="an IPS programme's quarterly feedback report")
    ips.add_argument("--program", required=True, metavar="ID", help="program_id, e.g. GGNET")
    ips.add_argument("--years", nargs="+", type=int, metavar="YEAR", help="default: its two most recent years")
    national = kinds.add_parser("national", help="the knowledge centre's national overview of one period")
    national.add_argument(
        "--period", metavar="CODE", help="a quarter (2018-K3) or a year (2018); default: the latest quarter"
    )
    outflow = kinds.add_parser("outflow", help="a day-care provider's yearly outflow report")
    outflow.add_argument("--provider", required=True, metavar="NAME", help="as in the marts, e.g. 'ICT Maatwerk'")
    outflow.add_argument("--year", type=int, help="default: its latest year")
    outflow.add_argument(
        "--min-count", type=int, metavar="N", help="per-location counts below N show as '<N' (default 5)"
    )
    for kind in (ips, outflow, national):
        kind.add_argument("--out", default=".", metavar="DIR", help="folder for the HTML and PDF (default: here)")
        _common(kind, inbox=False)
    return main_parser


def make_report(args: argparse.Namespace, paths: Paths) -> list[str]:
    """One report from the serving file, read-only (a refresh may run meanwhile): HTML, and a PDF if it can."""
    from pipelines.reporting.assets import ReportsResource
    from pipelines.reporting.build import chromium_or_reason, print_pdfs, program_file_name
    from pipelines.reporting.chromium import ChromiumUnavailable
    from pipelines.reporting.common import default_privacy, serving, slug
    from pipelines.reporting.ips import IpsReport
    from pipelines.reporting.outflow import OutflowReport

    settings = ReportsResource.from_environment()
    min_count = getattr(args, "min_count", None) or settings.min_count
    privacy = default_privacy(min_count)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serving(paths.warehouse) as con:
        if args.kind == "ips":
            html = IpsReport(con, args.program, args.years, privacy).html()
            target = out / f"{program_file_name(args.program)}.html"
        elif args.kind == "national":
            from pipelines.reporting.national import NationalReport

            report = NationalReport(con, args.period)
            html = report.html()
            target = out / f"{report.period_code}.html"
        else:
            html = OutflowReport(con, args.provider, args.year, privacy).html()
            target = out / f"{slug(args.provider)}.html"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    lines = [f"report:    {target}"]
    chromium, problem = chromium_or_reason(settings.chromium)
    if chromium is not None:
        try:
            lines.append(f"pdf:       {print_pdfs(chromium, [target])[0]}")
        except ChromiumUnavailable as exc:
            problem = str(exc)
    if problem:
        lines.append(f"no PDF:    {problem}")
    return lines


def erase_client(args: argparse.Namespace, paths: Paths) -> list[str]:
    """Erase one client from the working database (under the writer lock) and put it on the erasure list; the lines
    say how many rows per source and which inbox and quarantine files still hold the id, never the id."""
    from pipelines.ingest.pseudonymise import current_key, install_key
    from pipelines.ingest.registry import load_registry
    from pipelines.privacy import check_key, erase, key_fingerprint
    from pipelines.warehouse import WarehouseFault

    client_id = sys.stdin.readline() if args.client_id == "-" else args.client_id
    client_id = client_id.strip()
    if not client_id:
        raise WarehouseFault("no client id given (--client-id ID, or --client-id - with the id on standard input)")
    registry = load_registry(paths.sources_dirs)
    key = current_key(paths.inbox)
    check_key(paths.work_db, paths.warehouse, key_fingerprint(key))
    with writing(paths) as con:
        install_key(con, key)
        done = erase(con, registry, client_id, args.source, [paths.inbox, paths.quarantine_dir])
    total = sum(done.removed.values())
    lines = [f"erase:     {total} rows removed from the working database; the client stays erased in later files"]
    lines += [f"  {source}: {n} rows" for source, n in sorted(done.removed.items()) if n]
    for path in done.files:  # the operator removes these, or they are read again (and their rows dropped)
        lines.append(f"  still holds the id: {path.replace(client_id, '***')}")
    return lines


def say(lines: list[str], stream=None) -> None:
    """Print lines for a person: each escaped (``shown``), so no file name or reason can forge a line of its own."""
    print("\n".join(shown(line) for line in lines), file=stream or sys.stdout)


def run(args: argparse.Namespace) -> int:
    paths = resolve_paths(getattr(args, "inbox", None), getattr(args, "warehouse", None))
    if args.command == "files":
        say(show_files(paths))
        return 0
    if args.command == "report":
        say(make_report(args, paths))
        return 0
    from pipelines.serving.postgres import dsn_from

    dsn = dsn_from(getattr(args, "postgres", None))
    if args.command == "postgres-grant":
        from pipelines.serving.postgres import PostgresFault, grant_centre, grant_program

        if not dsn:
            raise PostgresFault("no database: set CARE_OUTCOMES_POSTGRES_DSN or pass --postgres DSN")
        if args.centre and args.role:
            raise PostgresFault("postgres-grant: --role goes with --program; --centre names the login itself")
        if args.centre:
            say(grant_centre(dsn, args.centre))
        elif not args.role:
            raise PostgresFault("postgres-grant --program ID needs --role NAME: the login that sees that programme")
        else:
            say(grant_program(dsn, args.program, args.role))
        return 0
    if args.command == "retract":
        from pipelines.ingest.load import retract
        from pipelines.ingest.registry import load_registry

        with writing(paths) as con:
            removed = retract(con, load_registry(paths.sources_dirs), args.file)
        print(
            f"retracted {args.file}: {removed} rows taken out of raw; the next refresh publishes the marts without them"
        )
        return 0
    if args.command == "erase":
        say(erase_client(args, paths))
        report = refresh(paths, args.verbose, force=True, postgres_dsn=dsn)  # the marts without the client
        args.report = report
        say(report.lines())
        return report.exit_code
    if args.command == "backup":
        from pipelines.backup import backup

        say(backup(paths, args.directory))
        return 0
    if args.command == "restore":
        from pipelines.backup import restore

        say(restore(args.directory, paths, force=args.force))
        return 0
    if args.command == "retry":
        from pipelines.ingest.load import request_retry

        with writing(paths) as con:
            chosen = request_retry(con, args.files)
        say([f"retry:     {len(chosen)} quarantined file(s) will be decided again: {', '.join(chosen) or '-'}"])
        report = refresh(paths, args.verbose, postgres_dsn=dsn)  # the retry request is news
    else:
        dbt_project = Path(args.dbt_project).resolve() if args.dbt_project else None
        report = refresh(paths, args.verbose, dbt_project, rebuild=args.rebuild, force=args.force, postgres_dsn=dsn)
    args.report = report  # for the alert after the night (main)
    say(report.lines())
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)  # the shell's environment wins, as with `dagster dev`

    from pipelines.alerts import AlertSettingError
    from pipelines.ingest.load import RepairRefused
    from pipelines.ingest.pseudonymise import MissingKey
    from pipelines.ingest.registry import RegistryError
    from pipelines.reporting.common import ReportError
    from pipelines.serving.postgres import PostgresFault
    from pipelines.transform.project import DbtParseError
    from pipelines.warehouse import WarehouseFault

    failure = None
    try:
        code = run(args)
    except (
        MissingKey, RegistryError, DbtParseError, WarehouseFault, RepairRefused, ReportError, PostgresFault,
        AlertSettingError,
    ) as exc:  # fmt: skip
        failure = str(exc)
        say([f"{args.command} failed: {exc}"], sys.stderr)
        code = 2
    except (KeyboardInterrupt, Interrupted) as exc:  # a person at the terminal: no alert
        what = str(exc) if isinstance(exc, Interrupted) else "stopped before anything was published"
        say([f"{args.command} interrupted: {what}"], sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # never a traceback on the terminal: one line here, the traceback in a log file
        log = _traceback_log(args)
        failure = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        say([f"{args.command} failed: {failure} ({log})"], sys.stderr)
        code = 2
    if args.command in ("refresh", "erase"):
        alert_after(args, code, failure)
    return code


def alert_after(args: argparse.Namespace, code: int, failure: str | None) -> None:
    """The alert of a night from the command line that was not clean (pipelines/alerts.py); never changes ``code``."""
    from pipelines import alerts

    if not alerts.configured():
        return
    try:
        alerts.check_settings()
    except alerts.AlertSettingError:  # said already: the night stopped on it
        return
    try:
        report = getattr(args, "report", None)
        if isinstance(report, RefreshReport):
            alert = alerts.alert_of_outcome(
                report.outcome, warehouse=report.paths.warehouse, missing=report.missing_latest or []
            )
            log = report.paths.log_file
        elif report is None:  # the night stopped before its run: a setting, the key, the inbox, a busy warehouse
            paths = resolve_paths(getattr(args, "inbox", None), getattr(args, "warehouse", None))
            alert = alerts.alert_for(warehouse=paths.warehouse, exit_code=code, published=False, cause=failure)
            log = None
        else:  # nothing new: a clean night
            return
        lines = alerts.deliver(alert)
    except Exception as exc:  # an alert never changes the night's result
        lines = [f"alert:     not sent: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"]
        log = None
    say(lines)
    if log is not None and lines:
        with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(shown(line) for line in lines) + "\n")


INTERRUPTED = 130  # the exit code of a command ended by Ctrl-C, as shells give it


def _traceback_log(args: argparse.Namespace) -> str:
    import tempfile
    import traceback

    text = traceback.format_exc()
    for folder in (
        resolve_paths(getattr(args, "inbox", None), getattr(args, "warehouse", None)).log_file.parent,
        Path(tempfile.gettempdir()),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "care_outcomes_error.log").write_text(text, encoding="utf-8")
            return f"traceback in {folder / 'care_outcomes_error.log'}"
        except OSError:
            continue
    return "no traceback kept"


def console() -> None:
    """The `care-outcomes` command: main(), then the exit handlers, then an exit that skips freeing the ~5,000 modules
    of Dagster, dbt and Great Expectations one by one (1.5 s of every refresh). Every file is closed by then."""
    import atexit

    try:
        code = main()
    except KeyboardInterrupt:  # before main() could say so itself (while it loads)
        print("interrupted: stopped before anything was published", file=sys.stderr)
        code = INTERRUPTED
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
