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
from dagster import AssetKey, RunRequest, SkipReason, build_sensor_context

from pipelines.definitions import defs
from pipelines.resources import WarehouseResource
from tests.conftest import ROOT, SAMPLE, run_refresh

MARTS = ["fidelity_items", "fidelity_totals", "ips_benchmark", "ips_quarterly", "ips_quarterly_national", "ips_yearly",
         "ips_yearly_national", "outflow_by_destination", "outflow_by_location", "outflow_ladder", "outflow_summary"]


def test_definitions_hold_job_schedule_sensor_and_one_writer():
    job = defs.resolve_job_def("refresh")
    assert job.tags["care_outcomes/warehouse"] == "writer"
    schedule = defs.resolve_schedule_def("nightly_refresh")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "Europe/Amsterdam")
    assert schedule.job_name == "refresh"
    assert defs.resolve_sensor_def("inbox_sensor").job_name == "refresh"
    graph = defs.resolve_asset_graph()
    writers = [k for k in graph.get_all_asset_keys() if k.path[0] in ("raw", "staging", "intermediate", "marts", "serving")]
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
        context = build_sensor_context(cursor=cursor, resources={"warehouse": warehouse})
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
    import sys, time, duckdb
    path, stop_file = sys.argv[1], sys.argv[2]
    held = duckdb.connect(path, read_only=True)          # a BI tool that keeps its connection open
    queries = errors = 0
    while True:
        try:
            n = held.execute("select count(*) from marts.ips_quarterly").fetchall()[0][0]
            fresh = duckdb.connect(path, read_only=True)  # and one that connects anew every time
            m = fresh.execute("select count(*) from marts.ips_quarterly").fetchall()[0][0]
            fresh.close()
            assert n == m == 47, (n, m)
            queries += 1
        except Exception as exc:
            errors += 1
            print("ERROR", type(exc).__name__, exc, flush=True)
        if __import__("os").path.exists(stop_file):
            break
        time.sleep(0.05)
    print("queries", queries, "errors", errors, flush=True)
""")


def test_refresh_twice_is_idempotent_and_a_bi_reader_is_never_blocked(sample_warehouse, tmp_path):
    served = tmp_path / "wh"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    warehouse = served / sample_warehouse.name
    before = marts_of(warehouse)
    con = duckdb.connect(str(warehouse), read_only=True)
    loads_before = con.execute("select * from audit.file_loads order by load_id").fetchall()
    con.close()
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(warehouse), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        done = run_refresh(SAMPLE, warehouse)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files:     0 loaded (0 rows), 0 quarantined, 0 duplicate" in done.stdout
    assert "errors 0" in out and int(out.split("queries ")[1].split()[0]) > 20, out
    assert marts_of(warehouse) == before
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select * from audit.file_loads order by load_id").fetchall() == loads_before
    con.close()


def test_resubmission_supersedes_and_every_version_stays_in_raw(sample_warehouse):
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    con = duckdb.connect(str(work), read_only=True)
    versions = con.execute(
        "select _file_name, paid_work, submitted_at from raw.ips_quarterly "
        "where program_id = 'PARNASSIA' and year = 2018 and quarter = 3 order by submitted_at").fetchall()
    con.close()
    assert [v[0] for v in versions] == ["ips_quarterly/parnassia_2018q3.csv", "ips_quarterly/parnassia_2018q3_correctie.csv"]
    served = duckdb.connect(str(sample_warehouse), read_only=True)
    (paid,) = served.execute("select paid_work from marts.ips_quarterly where program_id = 'PARNASSIA' and year = 2018 and quarter = 3").fetchone()
    served.close()
    assert paid == versions[1][1] != versions[0][1]


KILL_IN_PUBLISH = textwrap.dedent("""
    import os, signal, sys
    import duckdb
    import pipelines.publish as publish
    from pipelines.settings import resolve_paths
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARE_OUTCOMES_")}

    # 1. killed in the middle of dbt
    log = served / "logs" / "last_refresh.log"
    refresh = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "refresh", "--inbox", str(SAMPLE), "--warehouse", str(warehouse)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline and not (log.exists() and "START sql table model marts." in log.read_text(errors="replace")):
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

    # 3. the next refresh succeeds, serves the same marts and clears the leftovers
    done = run_refresh(SAMPLE, warehouse)
    assert done.returncode == 0, done.stdout + done.stderr
    assert marts_of(warehouse) == marts
    assert not list(served.glob(f".{warehouse.name}.*.tmp*"))
