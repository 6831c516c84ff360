"""The Dagster UI as the README starts it: `dagster dev -w workspace.yaml` on 127.0.0.1, asked over GraphQL
for the asset graph, the checks, the schedule and the sensor, made to run the refresh, then stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb

from tests.conftest import MARTS, ROOT, clean_env

QUERY = """{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
  workspaceOrError { ... on Workspace { locationEntries {
    loadStatus
    locationOrLoadError { __typename ... on PythonError { message cause { message } } }
  } } }
  repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    jobs { name }
    schedules { name cronSchedule executionTimezone scheduleState { status } }
    sensors { name sensorState { status } }
  } } }
}"""


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
} }"""

RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def wait_for_code_location(port: int, process: subprocess.Popen, log: Path, deadline: float) -> dict:
    """Poll until the webserver answers and the code location has loaded its assets."""
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster dev exited early:\n{log.read_text()}"
        try:
            answer = graphql(port, QUERY)
            entries = answer.get("data", {}).get("workspaceOrError", {}).get("locationEntries") or []
            for entry in entries:
                error = entry["locationOrLoadError"] or {}
                if entry["loadStatus"] == "LOADED" and error.get("__typename") == "PythonError":
                    raise AssertionError(f"the code location failed to load: {error}")
            if answer.get("data", {}).get("assetNodes"):
                return answer
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev did not serve the code location in time:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C the whole process group (webserver, daemon, code server), then make sure it is gone."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def launch_refresh(port: int, deadline: float) -> str:
    """Launch the job `refresh` as the UI's Materialize button does; wait for the run to end; its status."""
    selector = {"repositoryLocationName": "care_outcomes", "repositoryName": "__repository__", "jobName": "refresh"}
    launched = graphql(port, LAUNCH, {"params": {"selector": selector, "runConfigData": {}}})["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    while time.monotonic() < deadline:
        status = graphql(port, RUN_STATUS, {"id": run_id})["data"]["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish in time")


def test_dagster_dev_shows_lineage_checks_schedule_sensor_and_runs_the_refresh(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "inbox" / "ips_quarterly").mkdir(parents=True)  # an inbox with an (empty) source folder
    warehouse = tmp_path / "warehouse" / "care_outcomes.duckdb"
    env = clean_env(
        DAGSTER_HOME=str(home),
        CARE_OUTCOMES_INBOX=str(tmp_path / "inbox"),
        CARE_OUTCOMES_WAREHOUSE=str(warehouse),
        CARE_OUTCOMES_PSEUDONYM_KEY="ui-test-key",
    )
    # as `make dev` runs it: .venv/bin not on PATH, so nothing may rely on finding `dbt` there
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != Path(sys.executable).parent
    )
    # the console script beside this interpreter, as `make dev` runs it from .venv/bin
    dagster = Path(sys.executable).with_name("dagster")
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        answer = wait_for_code_location(port, process, log, time.monotonic() + 180)
        # a run launched from the UI goes through the queue, the daemon and a run process of its own
        status = launch_refresh(port, time.monotonic() + 300)
    finally:
        stop(process)

    assert "errors" not in answer, answer["errors"]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}
    parents = {key: {"/".join(d["path"]) for d in n["dependencyKeys"]} for key, n in nodes.items()}

    # lineage from an inbox folder through every layer to the served file
    chain = [
        "inbox/ips_quarterly",
        "raw/ips_quarterly",
        "staging/stg_ips__quarterly_submissions",
        "intermediate/int_ips_quarterly_latest",
        "marts/ips_quarterly",
        "serving/care_outcomes",
    ]
    for parent, child in zip(chain, chain[1:]):
        assert parent in parents[child], f"{child} should depend on {parent}"
    assert {"inbox/outflow", "inbox/outflow_zorgdossier", "inbox/outflow_careplan_xlsx"} <= parents["raw/outflow"]

    def ancestors(key: str) -> set[str]:
        seen, todo = set(), [key]
        while todo:
            for parent in parents.get(todo.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    marts = sorted(k for k in nodes if k.startswith("marts/"))
    assert marts == [f"marts/{m}" for m in MARTS]
    for mart in marts:
        assert any(a.startswith("inbox/") for a in ancestors(mart)), f"{mart} has no inbox upstream"
        assert mart in parents["serving/care_outcomes"]
        checks = {c["name"]: c["blocking"] for c in nodes[mart]["assetChecksOrError"]["checks"]}
        gx_name = "gx_" + mart.split("/")[1]
        assert checks.get(gx_name) is True, f"{mart} should carry its blocking GX suite, has {sorted(checks)}"

    assert status == "SUCCESS", log.read_text()
    served = duckdb.connect(str(warehouse), read_only=True)
    assert served.execute("select count(*) from marts.ips_quarterly").fetchall() == [(0,)]
    served.close()

    (repository,) = answer["data"]["repositoriesOrError"]["nodes"]
    assert repository["location"]["name"] == "care_outcomes"
    assert "refresh" in {j["name"] for j in repository["jobs"]}
    schedules = {s["name"]: s for s in repository["schedules"]}
    assert schedules["nightly_refresh"]["cronSchedule"] == "0 2 * * *"
    assert schedules["nightly_refresh"]["executionTimezone"] == "Europe/Amsterdam"
    assert schedules["nightly_refresh"]["scheduleState"]["status"] == "RUNNING"
    assert {s["name"] for s in repository["sensors"]} == {
        "inbox_sensor",
        "alert_on_failed_night",
        "alert_on_degraded_night",
    }
