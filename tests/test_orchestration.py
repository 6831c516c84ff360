"""Nightly orchestration and safe serving: schedule, sensor, one writer, idempotent refreshes,
a BI reader never blocked, killed refreshes that leave the served file intact."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import yaml
from dagster import RunRequest, SkipReason, build_sensor_context

from pipelines.definitions import defs as load_defs
from pipelines.ingest.pseudonymise import DEVELOPMENT_KEY
from pipelines.resources import WarehouseResource
from tests.conftest import MARTS, ROOT, SAMPLE, SESSION_START, clean_env, refresh_command, run_refresh

defs = load_defs()  # the code location as `dagster dev` loads it


def test_definitions_hold_job_schedule_sensor_and_one_writer():
    job = defs.resolve_job_def("refresh")
    assert job.tags["care_outcomes/warehouse"] == "writer"
    schedule = defs.resolve_schedule_def("nightly_refresh")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "Europe/Amsterdam")
    assert schedule.job_name == "refresh"
    assert defs.resolve_sensor_def("inbox_sensor").job_name == "refresh"
    graph = defs.resolve_asset_graph()
    writers = [
        k for k in graph.get_all_asset_keys() if k.path[0] in ("raw", "staging", "intermediate", "marts", "serving")
    ]
    pools = {graph.get(k).pools and next(iter(graph.get(k).pools)) for k in writers if graph.get(k).is_materializable}
    assert pools == {"care_outcomes_warehouse"}
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    assert {"key": "care_outcomes/warehouse", "limit": 1} in instance["concurrency"]["runs"]["tag_concurrency_limits"]


def test_inbox_sensor_starts_a_refresh_only_for_new_files(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "ips_quarterly").mkdir(parents=True)
    warehouse = WarehouseResource(inbox=str(inbox), warehouse=str(tmp_path / "co.duckdb"))
    sensor = defs.resolve_sensor_def("inbox_sensor")

    def tick(cursor):
        with build_sensor_context(cursor=cursor, resources={"warehouse": warehouse}) as context:
            result = sensor(context)
            return result, context.cursor

    result, cursor = tick(None)
    assert isinstance(result, SkipReason), "an empty inbox starts nothing"
    (inbox / "ips_quarterly" / "q1.csv").write_text("program_id\nX\n")
    result, cursor = tick(cursor)
    assert isinstance(result, RunRequest) and result.tags["care_outcomes/new_files"] == "1"
    assert "ips_quarterly/q1.csv" in json.loads(cursor)
    result, cursor = tick(cursor)
    assert isinstance(result, SkipReason), "files seen before start nothing"
    (inbox / "ips_quarterly" / "2018").mkdir()
    (inbox / "ips_quarterly" / "2018" / "q1.csv").write_text("program_id\nZ\n")  # same name, in a sub-folder
    result, cursor = tick(cursor)
    assert isinstance(result, RunRequest) and "ips_quarterly/2018/q1.csv" in json.loads(cursor)
    (inbox / "ips_quarterly" / "q2.csv").write_text("program_id\nY\n")
    (inbox / "not_a_source").mkdir()
    (inbox / "not_a_source" / "x.csv").write_text("x")
    result, cursor = tick(cursor)
    assert isinstance(result, RunRequest) and result.tags["care_outcomes/new_files"] == "1"
    first_key = result.run_key
    os.utime(inbox / "ips_quarterly" / "q2.csv", ns=(1, 1))
    result, cursor = tick(cursor)
    assert isinstance(result, RunRequest) and result.run_key != first_key, "a changed file counts as new"


def marts_of(path: Path) -> dict[str, list]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {m: sorted(map(repr, con.execute(f"select * from marts.{m}").fetchall())) for m in MARTS}
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


READER = textwrap.dedent("""
    import json, os, subprocess, sys, time, duckdb
    path, stop_file = sys.argv[1], sys.argv[2]
    COUNT = "select count(*) from marts.ips_quarterly"
    FRESH = f"import duckdb; print(duckdb.connect({path!r}, read_only=True).execute({COUNT!r}).fetchall()[0][0])"
    held = duckdb.connect(path, read_only=True)          # a BI tool that keeps its connection open
    seen = {"held": [], "fresh": [], "errors": []}
    while True:
        stopping = os.path.exists(stop_file)
        try:
            seen["held"].append(held.execute(COUNT).fetchall()[0][0])
        except Exception as exc:
            seen["errors"].append(f"held: {type(exc).__name__}: {exc}")
        # and one that connects anew every time (its own process: DuckDB shares one instance per path in a process)
        fresh = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True)
        if fresh.returncode == 0:
            seen["fresh"].append(int(fresh.stdout))
        else:
            seen["errors"].append("fresh: " + fresh.stderr.strip().splitlines()[-1])
        if stopping:
            break
    print(json.dumps(seen), flush=True)
""")


def read_during_refresh(
    inbox: Path, warehouse: Path, stop: Path, env: dict | None = None, args: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, dict]:
    """Refresh `warehouse` from `inbox` while a second process reads it as a BI tool would."""
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1)
        done = run_refresh(inbox, warehouse, env, args=args)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=120)
    return done, json.loads(out)


def test_refresh_twice_is_idempotent_and_a_bi_reader_is_never_blocked(sample_warehouse, tmp_path):
    served = tmp_path / "wh"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    warehouse = served / sample_warehouse.name
    before = marts_of(warehouse)
    con = duckdb.connect(str(warehouse), read_only=True)
    loads_before = con.execute("select * from audit.file_loads order by load_id").fetchall()
    con.close()
    # nothing is new, so only --force refreshes: the marts come out identical
    done, seen = read_during_refresh(SAMPLE, warehouse, tmp_path / "stop", args=("--force",))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files:     0 loaded (0 rows), 0 quarantined, 0 duplicate" in done.stdout
    assert seen["errors"] == [] and len(seen["fresh"]) > 5, seen
    assert set(seen["held"]) == set(seen["fresh"]) == {47}
    assert marts_of(warehouse) == before
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select * from audit.file_loads order by load_id").fetchall() == loads_before
    con.close()


def test_a_held_connection_keeps_its_snapshot_and_new_connections_see_the_new_marts(sample_warehouse, tmp_path):
    served = tmp_path / "wh"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    warehouse = served / sample_warehouse.name
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLE, inbox)
    # a warehouse holds one inbox's data: this copy of the sample's warehouse now belongs to the copied inbox
    con = duckdb.connect(str(warehouse.with_name(warehouse.stem + ".work.duckdb")))
    con.execute("update audit.warehouse set inbox = ?", [str(inbox)])
    con.close()
    (inbox / "ips_quarterly" / "zuyderland_2018q4.csv").write_text(
        "program_id,program_name,year,quarter,caseload,new_clients,fte,paid_work,paid_work_uwv,education,"
        "outflow_successful,outflow_unsuccessful\nZUYDERLAND,Zuyderland IPS,2018,4,40,6,3.2,12,8,2,3,1\n"
    )
    # any inbox but the bundled sample needs a pseudonym key: the one this warehouse was built with (another is
    # refused); the sample's files are skipped as already loaded
    key = {"CARE_OUTCOMES_PSEUDONYM_KEY": DEVELOPMENT_KEY}
    done, seen = read_during_refresh(inbox, warehouse, tmp_path / "stop", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files:     1 loaded (1 rows)" in done.stdout
    assert seen["errors"] == [], seen["errors"]
    assert set(seen["held"]) == {47}, "an open connection reads one consistent version, never a half-built one"
    assert seen["fresh"][0] == 47 and seen["fresh"][-1] == 48, seen["fresh"]
    assert seen["fresh"] == sorted(seen["fresh"]), "once published, the new marts stay published"


def test_resubmission_supersedes_and_every_version_stays_in_raw(sample_warehouse):
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    con = duckdb.connect(str(work), read_only=True)
    versions = con.execute(
        "select _file_name, paid_work, submitted_at from raw.ips_quarterly "
        "where program_id = 'PARNASSIA' and year = 2018 and quarter = 3 order by submitted_at"
    ).fetchall()
    con.close()
    assert [v[0] for v in versions] == [
        "ips_quarterly/parnassia_2018q3.csv",
        "ips_quarterly/parnassia_2018q3_correctie.csv",
    ]
    served = duckdb.connect(str(sample_warehouse), read_only=True)
    (paid,) = served.execute(
        "select paid_work from marts.ips_quarterly where program_id = 'PARNASSIA' and year = 2018 and quarter = 3"
    ).fetchone()
    served.close()
    assert paid == versions[1][1] != versions[0][1]


KILL_IN_PUBLISH = textwrap.dedent("""
    import os, signal, sys
    import duckdb
    import pipelines.serving.publish as publish
    from pipelines.warehouse import resolve_paths
    paths = resolve_paths(sys.argv[1], sys.argv[2])
    real_replace = os.replace
    def replace(src, dst):
        if str(dst) == str(paths.warehouse):
            os.kill(os.getpid(), signal.SIGKILL)        # the power goes out just before the swap
        return real_replace(src, dst)
    publish.os.replace = replace
    con = duckdb.connect(str(paths.work_db))
    publish.publish(con, paths, "killed-run")
""")


def test_killed_refreshes_leave_the_served_file_intact_and_the_next_one_succeeds(sample_warehouse, tmp_path):
    served = tmp_path / "wh"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    warehouse = served / sample_warehouse.name
    original, marts = digest(warehouse), marts_of(warehouse)
    env = clean_env()

    # 1. killed in the middle of dbt
    log = served / "logs" / "last_refresh.log"
    refresh = subprocess.Popen(
        refresh_command(SAMPLE, warehouse, "--force"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline and not (
        log.exists() and "START sql table model marts." in log.read_text(errors="replace")
    ):
        time.sleep(0.2)
    assert refresh.poll() is None, "the refresh ended before dbt built the marts"
    os.killpg(refresh.pid, signal.SIGKILL)
    refresh.wait()
    assert digest(warehouse) == original and marts_of(warehouse) == marts

    # 2. killed in the middle of the publish, after the new file was written, before the swap
    killed = subprocess.run([sys.executable, "-c", KILL_IN_PUBLISH, str(SAMPLE), str(warehouse)], cwd=ROOT, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert list(served.glob(f".{warehouse.name}.*.tmp")), "the half-published file was left behind"
    assert digest(warehouse) == original and marts_of(warehouse) == marts

    # 3. the next refresh succeeds (nothing is new: it says so), serves the same marts and clears the leftovers
    done = run_refresh(SAMPLE, warehouse)
    assert done.returncode == 0 and "nothing new since" in done.stdout, done.stdout + done.stderr
    assert marts_of(warehouse) == marts
    assert not list(served.glob(f".{warehouse.name}.*.tmp*"))


HOLD_LOCK = textwrap.dedent("""
    import sys
    from pipelines.warehouse import resolve_paths, writer_lock
    with writer_lock(resolve_paths(sys.argv[1], sys.argv[2])):
        print("held", flush=True)
        sys.stdin.read()                                  # until the test closes our stdin
""")


def test_the_cli_and_dagster_runs_share_one_writer_lock(tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "wh" / "care_outcomes.duckdb"
    (inbox / "ips_quarterly").mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(inbox), str(warehouse)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        # a refresh from the command line refuses to start
        done = run_refresh(inbox, warehouse, {"CARE_OUTCOMES_PSEUDONYM_KEY": "k" * 64})
        assert done.returncode == 2 and "another refresh is writing" in done.stderr, done.stdout + done.stderr
        # and so does a run the schedule, the sensor or the UI launches
        from dagster import DagsterInstance

        result = defs.resolve_job_def("refresh").execute_in_process(
            instance=DagsterInstance.ephemeral(),
            raise_on_error=False,
            resources={"warehouse": WarehouseResource(inbox=str(inbox), warehouse=str(warehouse))},
        )
        assert not result.success
        failures = [
            e
            for e in result.all_events
            if e.event_type_value in ("RUN_FAILURE", "STEP_FAILURE", "RESOURCE_INIT_FAILURE")
        ]
        assert any("another refresh is writing" in str(e.event_specific_data) for e in failures), failures
        assert not warehouse.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # once released, the refresh runs (and takes the lock once, though its run takes it again)
    done = run_refresh(inbox, warehouse, {"CARE_OUTCOMES_PSEUDONYM_KEY": "k" * 64})
    assert done.returncode == 0, done.stdout + done.stderr


def test_dbt_artefacts_and_dagster_runs_do_not_grow_without_bound(sample_build, tmp_path):
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    from pipelines.cli import prune_runs

    # every dbt build writes its artefacts in a folder of its own that goes with the step
    assert [d for d in (ROOT / "dbt" / "target").glob("care_outcomes_dbt-*") if d.stat().st_mtime > SESSION_START] == []
    # the Dagster instance keeps the newest refresh runs only
    instance = DagsterInstance.ephemeral()
    for i in range(5):
        instance.add_run(DagsterRun(job_name="refresh", run_id=f"run-{i}", status=DagsterRunStatus.SUCCESS))
    instance.add_run(DagsterRun(job_name="refresh", run_id="running", status=DagsterRunStatus.STARTED))
    assert prune_runs(instance, keep=2) == 3
    assert {r.run_id for r in instance.get_runs()} == {"run-4", "run-3", "running"}


def test_a_night_without_news_starts_no_run_and_says_so(sample_warehouse, tmp_path):
    served = tmp_path / "wh"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    warehouse = served / sample_warehouse.name
    original = digest(warehouse)
    home = served / "dagster_home"
    quiet = run_refresh(SAMPLE, warehouse)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "nothing new since the refresh published at" in quiet.stdout and "marts unchanged" in quiet.stdout
    assert digest(warehouse) == original, "the served file is not touched"
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(home))
    assert len(instance.get_runs()) == 1, "no Dagster run was started"
    instance.dispose()

    # the schedule skips with a reason the UI shows, and starts a run once a file changed
    from dagster import build_schedule_context

    from pipelines.serving.publish import NEWS_TAG

    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLE, inbox)
    con = duckdb.connect(str(warehouse.with_name(warehouse.stem + ".work.duckdb")))
    con.execute("update audit.warehouse set inbox = ?", [str(inbox)])
    con.close()
    resource = WarehouseResource(inbox=str(inbox), warehouse=str(warehouse))
    schedule = defs.resolve_schedule_def("nightly_refresh")
    # the copy keeps the files' names, sizes and modification times: still nothing new
    with build_schedule_context(resources={"warehouse": resource}) as context:
        skipped = schedule.evaluate_tick(context)
    assert not skipped.run_requests and "nothing new since the refresh published at" in skipped.skip_message
    os.utime(inbox / "ips_quarterly" / "ggnet_2017.csv")  # a file sent again
    with build_schedule_context(resources={"warehouse": resource}) as context:
        (run_request,) = schedule.evaluate_tick(context).run_requests
    assert run_request.tags[NEWS_TAG]
