"""What takes the fixed cost of a refresh down (issue 15) still does the whole job: Dagster records every event in
its own files, dbt runs in the run's process with dagster-dbt's events, Great Expectations validates in a worker
with the outcomes it gives in process. The timings themselves are in `make benchmark`, not here."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from data_quality.runner import Dataset, Suite, read_frames, validate
from data_quality.suites import ALL_SUITES
from data_quality.worker import ValidationError, Validator
from pipelines.transform import worker as dbt_worker
from pipelines.transform.in_process import DbtInThread, DbtInWorker
from pipelines.transform.project import DBT_DIR, dbt_args, dbt_parse_ahead_args
from pipelines.warehouse import resolve_paths
from tests.conftest import SAMPLE

SUITES = {s.name: s for s in ALL_SUITES}


def test_the_refresh_records_its_run_in_dagsters_own_files(sample_warehouse):
    from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus
    from dagster._core.storage.event_log import SqliteEventLogStorage

    from pipelines.instance import PersistentSqliteEventLogStorage

    instance = DagsterInstance.from_config(str(sample_warehouse.parent / "dagster_home"))
    assert isinstance(instance.event_log_storage, PersistentSqliteEventLogStorage)
    run = instance.get_runs(limit=1)[0]
    assert run.status == DagsterRunStatus.SUCCESS
    ours = instance.all_logs(run.run_id)
    # Dagster's own class (the UI's, the daemon's, any instance without ours) reads the same events
    plain = SqliteEventLogStorage(str(sample_warehouse.parent / "dagster_home" / "history" / "runs"))
    theirs = plain.get_logs_for_run(run.run_id)
    assert [e.timestamp for e in theirs] == [e.timestamp for e in ours] and len(ours) > 300
    kinds = [e.dagster_event.event_type_value for e in theirs if e.dagster_event]
    # every model and seed, and every dbt data test and GX suite as an asset check
    assert kinds.count("ASSET_MATERIALIZATION") >= 25 and kinds.count("ASSET_CHECK_EVALUATION") >= len(ALL_SUITES) + 80
    # the mart suites are checks of one step (validated together, on both cores); a raw table's suite, its own step
    gx_steps = {
        e.dagster_event.event_specific_data.check_name: e.step_key
        for e in theirs
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.dagster_event.event_specific_data.check_name.startswith("gx_")
    }  # fmt: skip
    assert set(gx_steps) == {f"gx_{s.name}" for s in ALL_SUITES}
    assert {gx_steps[f"gx_{s.name}"] for s in ALL_SUITES if s.asset[0] != "raw"} == {"gx_marts"}
    assert len({gx_steps[f"gx_{s.name}"] for s in ALL_SUITES if s.asset[0] == "raw"}) == 3
    # the cross-run index the UI's asset pages read
    latest = plain.get_latest_materialization_events([AssetKey(["marts", "ips_quarterly"])])
    assert latest[AssetKey(["marts", "ips_quarterly"])].run_id == run.run_id
    # and the check executions its asset pages list (stored once the storage knew the table was there)
    check = AssetCheckKey(AssetKey(["marts", "ips_quarterly"]), "gx_ips_quarterly")
    history = plain.get_asset_check_execution_history(check, limit=5)
    assert history and history[0].run_id == run.run_id and history[0].status.value == "SUCCEEDED"


def _parse(target: Path, work_db: str) -> list[str]:
    """The names of the events of `dbt parse` against ``work_db`` in ``target``."""
    parse = DbtInThread(
        dbt_args("parse", work_db, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target-path",
                 str(target), "--log-path", str(target), "--log-level", "none")
    )  # fmt: skip
    names = [json.loads(line)["info"]["name"] for line in parse.stdout]
    assert parse.wait() == 0, names
    return names


def test_dbt_keeps_the_parse_state_of_each_warehouse(sample_warehouse, tmp_path):
    paths = resolve_paths(warehouse=sample_warehouse)
    # the state kept after the sample build lets dbt skip parsing the next night (same warehouse, same vars) ...
    shutil.copyfile(paths.dbt_parse_state, tmp_path / "partial_parse.msgpack")
    assert "UnableToPartialParse" not in _parse(tmp_path, str(paths.work_db))
    # ... which dbt refuses for another working database: why each warehouse keeps its own
    shutil.copyfile(paths.dbt_parse_state, tmp_path / "partial_parse.msgpack")
    assert "UnableToPartialParse" in _parse(tmp_path, str(tmp_path / "other.work.duckdb"))


def _in_worker(args):
    dbt_worker.prestart()
    return DbtInWorker(dbt_worker.take(), args)


@pytest.mark.parametrize("where", [DbtInThread, _in_worker], ids=["in a thread", "in the worker"])
def test_dbt_in_the_run_process_speaks_as_its_command_line(tmp_path, where):
    try:
        parse = where(
            ["parse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target-path", str(tmp_path),
             "--log-path", str(tmp_path), "--log-level", "none", "--vars", json.dumps({"work_db": ":memory:"})]
        )  # fmt: skip
        lines = [json.loads(line) for line in parse.stdout]
        assert parse.wait() == 0
        assert {"info", "data"} <= set(lines[0]) and {line["info"]["level"] for line in lines} <= {"info", "warn"}
        assert (tmp_path / "manifest.json").exists()
    finally:
        dbt_worker.discard_prestarted()
    try:
        broken = where(["build", "--project-dir", str(tmp_path / "nowhere")])
        errors = [json.loads(line)["info"] for line in broken.stdout if json.loads(line)["info"]["level"] == "error"]
        assert broken.wait() != 0 and errors and "nowhere" in " ".join(e["msg"] for e in errors)
    finally:
        dbt_worker.discard_prestarted()


def test_the_dbt_worker_parses_ahead_for_the_build_of_a_new_warehouse(tmp_path):
    state, work_db = tmp_path / "wh.dbt_parse.msgpack", tmp_path / "wh.work.duckdb"
    dbt_worker.prestart(dbt_parse_ahead_args(work_db), state)  # as the command line does for this warehouse
    try:
        assert dbt_worker.take() is not None  # given to the build once the parse is done ...
    finally:
        dbt_worker.discard_prestarted()
    assert state.exists() and not work_db.exists(), "parsing does not open the database"
    # ... which then finds the project parsed: the parse state is valid for the build's vars
    (tmp_path / "build").mkdir()
    shutil.copyfile(state, tmp_path / "build" / "partial_parse.msgpack")
    assert "UnableToPartialParse" not in _parse(tmp_path / "build", str(work_db))


def test_the_dbt_worker_serves_one_command_and_a_worker_that_dies_ends_it(tmp_path):
    dbt_worker.prestart()
    try:
        process = dbt_worker.take()
        assert process is not None and dbt_worker.take() is None, "one command: the run it was started for"
        build = DbtInWorker(process, ["build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                                      "--target-path", str(tmp_path), "--log-path", str(tmp_path)])  # fmt: skip
        next(iter(build.stdout))  # dbt has started
        build.send_signal(2)  # an interrupted run stops the worker (as would the kernel, out of memory): the command
        # ends with an error, it does not hang
        rest = [json.loads(line)["info"] for line in build.stdout]
        assert build.wait() == 2 and rest[-1]["level"] == "error" and "worker process ended" in rest[-1]["msg"]
    finally:
        dbt_worker.discard_prestarted()
    assert dbt_worker.take() is None


@pytest.fixture(scope="module")
def frames(sample_warehouse):
    work = resolve_paths(warehouse=sample_warehouse).work_db
    con = duckdb.connect(str(work), read_only=True)
    try:
        yield {
            name: read_frames(con, SUITES[name]) for name in ("raw_ips_quarterly", "ips_quarterly", "outflow_summary")
        }
    finally:
        con.close()


def _same(a, b) -> None:
    assert (a.suite, a.evaluated, a.passed) == (b.suite, b.evaluated, b.passed)
    assert json.dumps(a.failures, default=str, sort_keys=True) == json.dumps(b.failures, default=str, sort_keys=True)


def test_the_validator_worker_gives_the_outcomes_of_validation_in_process(frames):
    broken = {**frames["ips_quarterly"], "rows": frames["ips_quarterly"]["rows"].copy()}
    broken["rows"].loc[0, "paid_work_rate"] = 1.5  # a rate above 100%: the suite must fail in both places
    validator = Validator.start()
    try:
        for name, data in [*frames.items(), ("ips_quarterly", broken)]:
            _same(validator.validate(SUITES[name], data), validate(SUITES[name], data))
        assert validator.in_worker
        failed = validator.validate(SUITES["ips_quarterly"], broken)
        assert not failed.success and "paid_work_rate" in failed.summary()
        # a suite the worker does not know is validated in this process
        extra = Suite(
            name="made_here",
            asset=("marts", "ips_quarterly"),
            description="",
            datasets=[Dataset(name="rows", sql="", key=("program_id",), expectations=lambda gxe: [
                gxe.ExpectColumnValuesToNotBeNull(column="program_id")])],
        )  # fmt: skip
        assert validator.validate(extra, {"rows": frames["ips_quarterly"]["rows"]}).success
        # a worker that died: the checks still get their outcomes
        validator._process.kill()
        validator._process.wait()
        _same(validator.validate(SUITES["ips_quarterly"], broken), validate(SUITES["ips_quarterly"], broken))
        assert not validator.in_worker
    finally:
        validator.close()


def _running(pid: int) -> bool:
    """Whether the process runs (an ended one may stay a zombie until it is reaped, outside this test's reach)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def test_the_worker_validates_a_request_of_many_suites_on_two_processes(frames):
    """The mart suites come as one request; the worker hands every other one to its helper (a fork of itself) and
    answers in the request's order, each suite with the outcome validation in this process gives."""
    broken = {**frames["ips_quarterly"], "rows": frames["ips_quarterly"]["rows"].copy()}
    broken["rows"].loc[0, "paid_work_rate"] = 1.5
    requests = [
        (SUITES["ips_quarterly"], frames["ips_quarterly"]),
        (SUITES["outflow_summary"], frames["outflow_summary"]),
        (SUITES["ips_quarterly"], broken),
        (SUITES["outflow_summary"], {}),  # no frames: this suite cannot be validated, the others still are
        (SUITES["raw_ips_quarterly"], frames["raw_ips_quarterly"]),
    ]
    validator = Validator.start()
    try:
        answers = validator.validate_many(requests)
        assert validator.in_worker
        helpers = _children(validator._process.pid)
        assert len(helpers) == 1, "the worker validates beside one helper process"
        assert isinstance(answers[3], ValidationError) and "KeyError" in str(answers[3])
        for (suite, data), answer in zip(requests, answers, strict=True):
            if data:
                _same(answer, validate(suite, data))
        assert not answers[2].success and answers[0].success
        assert validator.validate_many([]) == []
        assert [a.suite for a in validator.validate_many(requests[:1])] == ["ips_quarterly"]  # a request of one
    finally:
        validator.close()
    # the helper ends with its worker: nothing is left running
    for _ in range(100):
        if not any(map(_running, helpers)):
            break
        time.sleep(0.05)
    assert not any(map(_running, helpers))


def test_a_night_with_nothing_new_is_answered_without_loading_dagster_dbt_or_dbt(sample_warehouse, tmp_path):
    """`pipelines.news` answers "nothing new" for the command line, the schedule and the sensor; it stays light, so
    that such a night costs about a second (Dagster 1 s, dagster-dbt and dbt 1.5-2 s, pandas 0.5 s to import)."""
    import subprocess
    import sys

    heavy = "('dagster', 'dagster_dbt', 'dbt.cli.main', 'great_expectations', 'pandas')"
    loaded = f"print(sorted(m for m in {heavy} if m in sys.modules))"
    probe = f"import sys, pipelines.news, pipelines.transform.project; {loaded}"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    # the command line's whole answer, on a copy of the published sample warehouse
    served = tmp_path / "wh"
    shutil.copytree(sample_warehouse.parent, served, ignore=shutil.ignore_patterns("*.lock", "logs"))
    night = (
        "import sys; from pipelines import cli; "
        f"cli.main(['refresh', '--inbox', {str(SAMPLE)!r}, '--warehouse', {str(served / sample_warehouse.name)!r}]); "
        + loaded
    )
    done = subprocess.run([sys.executable, "-c", night], capture_output=True, text=True, check=True)
    assert "nothing new since the refresh published at" in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_the_benchmarks_dbt_floor_builds_the_project_as_the_refresh_does(sample_warehouse, tmp_path):
    """`make benchmark` prints the floor of the fixed cost from dbt's import, parse and build without Dagster: that
    build must be the nightly one (every seed, model and data test, from a new parse), else the floor is not one."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("benchmark", Path(__file__).parents[1] / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    sample_work_db = resolve_paths(warehouse=sample_warehouse).work_db
    work_db = tmp_path / sample_work_db.name
    shutil.copyfile(sample_work_db, work_db)
    with duckdb.connect(str(work_db)) as con:
        expected = con.execute("select * from marts.ips_yearly order by all").fetchall()
        con.execute("drop table marts.ips_yearly")
    measured = benchmark.measure([sys.executable, "-c", benchmark.DBT_ALONE, str(work_db)])
    assert measured["code"] == 0, measured["stderr"][-2000:]
    assert measured["cpu"] > 0
    with duckdb.connect(str(work_db), read_only=True) as con:
        assert con.execute("select * from marts.ips_yearly order by all").fetchall() == expected
