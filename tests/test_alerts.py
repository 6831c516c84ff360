"""Alerts (issue 28): a night that is not clean sends one JSON POST and/or one e-mail, never with personal data; a
clean night sends nothing; a failing channel is retried and never changes the night's result.

Against a real HTTP listener and a real SMTP server (aiosmtpd), both on 127.0.0.1 and started by the test."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import SAMPLE, run_refresh

KEY = {"CARE_OUTCOMES_PSEUDONYM_KEY": "alert-test-key"}
CLIENT_ID = "C778899"  # in the bad file below: must reach no alert
BSN = "111222333"


class Webhook:
    """An HTTP listener on 127.0.0.1 that records every POST; the first ``fail`` requests get HTTP 500."""

    def __init__(self, fail: int = 0):
        self.bodies: list[dict] = []
        self.requests = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests += 1
                if hook.requests <= fail:
                    self.send_response(500)
                else:
                    hook.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token-123?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def webhook():
    hook = Webhook(fail=2)
    yield hook
    hook.stop()


@pytest.fixture()
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 collecting the messages it receives."""
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield {"address": f"127.0.0.1:{port}", "messages": handler.messages}
    controller.stop()


def alert_env(hook: Webhook | None = None, smtp: dict | None = None, **more) -> dict:
    env = {**KEY, "CARE_OUTCOMES_ALERT_BACKOFF": "0.05", "CARE_OUTCOMES_UI_URL": "http://dagster.example:3000"}
    if hook:
        env["CARE_OUTCOMES_ALERT_WEBHOOK"] = hook.url
    if smtp:
        env.update(
            CARE_OUTCOMES_ALERT_SMTP=smtp["address"],
            CARE_OUTCOMES_ALERT_TO="beheer@example.nl, kenniscentrum@example.nl",
            CARE_OUTCOMES_ALERT_FROM="care-outcomes@example.nl",
        )
    return {**env, **more}


def assert_no_personal_data(text: str) -> None:
    assert CLIENT_ID not in text and BSN not in text and "Jansen" not in text
    assert "secret-token-123" not in text  # the webhook's token is not echoed either


def test_a_quarantine_night_alerts_by_webhook_and_mail_without_personal_data(tmp_path, webhook, smtp_server):
    inbox = tmp_path / "inbox"
    for folder in ("ips_quarterly", "outflow_zorgdossier"):  # two sources are enough, and quicker than the sample
        shutil.copytree(SAMPLE / folder, inbox / folder)
    bad = inbox / "outflow_zorgdossier" / "ict_maatwerk_2024_fout.csv"
    bad.write_text(  # a bad date, a client id and a BSN in a free-text column: quarantined
        "Cliëntnummer;Zorgaanbieder;Locatie;Startdatum;Einddatum;Reden uitschrijving\n"
        f"{CLIENT_ID};ICT Maatwerk;Arnhem;31-02-2023;01-03-2024;Jansen {BSN}\n",
        encoding="utf-8",
    )
    done = run_refresh(inbox, tmp_path / "wh" / "care_outcomes.duckdb", env=alert_env(webhook, smtp_server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alert:     sent to http://127.0.0.1:" in done.stdout  # on the third attempt: the first two got HTTP 500
    assert "alert:     mailed to beheer@example.nl, kenniscentrum@example.nl" in done.stdout
    assert webhook.requests == 3 and len(webhook.bodies) == 1
    (alert,) = webhook.bodies
    assert alert["status"] == "degraded" and alert["exit_code"] == 0
    assert alert["counts"]["quarantined"] == 1 and alert["counts"]["loaded"] == 16
    assert alert["quarantined_files"] == ["outflow_zorgdossier/ict_maatwerk_2024_fout.csv"]
    assert alert["counts"]["warnings"] == len(alert["warnings"])
    assert alert["run_url"].startswith("http://dagster.example:3000/runs/") and alert["run_id"] in alert["run_url"]
    assert_no_personal_data(json.dumps(alert))
    ((recipients, mail),) = smtp_server["messages"]
    assert recipients == ["beheer@example.nl", "kenniscentrum@example.nl"]
    assert mail["Subject"].startswith("care-outcomes: published with problems")
    body = mail.as_string()
    assert "ict_maatwerk_2024_fout.csv" in body
    assert_no_personal_data(body)
    assert_no_personal_data(done.stdout + done.stderr)


def test_exit_1_and_exit_2_nights_alert_and_a_failing_webhook_changes_nothing(tmp_path, webhook):
    # exit 1: published, but PostgreSQL could not be reached
    inbox = tmp_path / "inbox"
    (inbox / "ips_quarterly").mkdir(parents=True)
    shutil.copy(SAMPLE / "ips_quarterly" / "lentis_2017_2018.csv", inbox / "ips_quarterly")
    env = alert_env(webhook, CARE_OUTCOMES_POSTGRES_DSN="host=127.0.0.1 port=9 dbname=none user=none connect_timeout=2")
    done = run_refresh(inbox, tmp_path / "wh" / "care_outcomes.duckdb", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    alert = webhook.bodies[-1]
    assert (alert["status"], alert["exit_code"]) == ("published_with_failures", 1)
    assert "postgres" in alert["cause"]
    # exit 2: the run cannot start (the inbox is missing)
    done = run_refresh(tmp_path / "no-inbox", tmp_path / "wh2" / "care_outcomes.duckdb", env=alert_env(webhook))
    assert done.returncode == 2
    alert = webhook.bodies[-1]
    assert (alert["status"], alert["exit_code"]) == ("failed", 2) and "no-inbox" in alert["cause"]
    # a webhook nobody listens on: the same exit code, one line saying so
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    env = alert_env(CARE_OUTCOMES_ALERT_WEBHOOK=closed, CARE_OUTCOMES_ALERT_ATTEMPTS="3")
    done = run_refresh(tmp_path / "no-inbox", tmp_path / "wh2" / "care_outcomes.duckdb", env=env)
    assert done.returncode == 2
    assert "alert:     not sent to http://127.0.0.1:" in done.stdout + done.stderr
    assert "after 3 attempt(s): URLError" in done.stdout + done.stderr


def test_a_clean_night_and_a_night_with_nothing_new_send_nothing(tmp_path, webhook, smtp_server):
    inbox = tmp_path / "inbox"
    (inbox / "ips_quarterly").mkdir(parents=True)
    shutil.copy(SAMPLE / "ips_quarterly" / "lentis_2017_2018.csv", inbox / "ips_quarterly")
    warehouse = tmp_path / "wh" / "care_outcomes.duckdb"
    for _ in range(2):  # the refresh, then nothing new
        done = run_refresh(inbox, warehouse, env=alert_env(webhook, smtp_server))
        assert done.returncode == 0 and "alert:" not in done.stdout, done.stdout
    assert "nothing new" in done.stdout
    assert webhook.requests == 0 and smtp_server["messages"] == []


def test_an_alert_setting_that_cannot_work_stops_the_night_before_it_starts(tmp_path):
    done = run_refresh(SAMPLE, tmp_path / "wh" / "care_outcomes.duckdb", env={
        "CARE_OUTCOMES_ALERT_WEBHOOK": "file:///etc/passwd"})  # fmt: skip
    assert done.returncode == 2
    assert "CARE_OUTCOMES_ALERT_WEBHOOK must be an http:// or https:// URL" in done.stderr
    assert not (tmp_path / "wh" / "care_outcomes.duckdb").exists()
    assert "alert:" not in done.stdout + done.stderr  # nothing was sent anywhere with it


def test_a_file_name_or_cause_that_looks_personal_is_withheld_from_the_alert():
    from pipelines.alerts import alert_for
    from pipelines.ingest.load import FileLoad

    files = [FileLoad(f"outflow/jansen_{BSN}.csv", "outflow", "quarantined", 0, None, ""),
             FileLoad("outflow/export_2024.csv", "outflow", "quarantined", 0, None, "")]  # fmt: skip
    alert = alert_for(warehouse="/srv/wh/care_outcomes.duckdb", exit_code=2, published=False, files=files,
                      cause="ValueError: client piet@example.nl not found", environ={})  # fmt: skip
    assert alert.quarantined_files[1] == "outflow/export_2024.csv"
    assert "withheld" in alert.quarantined_files[0] and "withheld" in alert.cause
    assert_no_personal_data(json.dumps(alert.payload()) + alert.text())
    assert "piet@example.nl" not in json.dumps(alert.payload())


def test_runs_the_schedule_starts_alert_through_the_sensors(tmp_path, webhook, monkeypatch):
    """The daemon's runs (schedule, inbox sensor, UI) alert through a run-status sensor (published with problems)
    and a run-failure sensor; a run the command line started is left to the command line."""
    from dagster import DagsterInstance, build_run_status_sensor_context

    from pipelines.definitions import build_defs
    from pipelines.orchestration import STARTED_BY_TAG, alert_for_run
    from pipelines.resources import WarehouseResource
    from pipelines.warehouse import resolve_paths

    for name, value in alert_env(webhook, CARE_OUTCOMES_CHROMIUM="off").items():
        monkeypatch.setenv(name, value)
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLE / "ips_quarterly", inbox / "ips_quarterly")
    (inbox / "ips_quarterly" / "broken.csv").write_text("program_id,year\nX,twenty\n", encoding="utf-8")
    paths = resolve_paths(inbox, tmp_path / "wh" / "care_outcomes.duckdb")
    defs = build_defs(paths)
    instance = DagsterInstance.ephemeral()
    sensors = {s.name: s for s in defs.sensors}
    warehouse = WarehouseResource(inbox=str(inbox), warehouse=str(paths.warehouse))
    schedule_tags = {"dagster/schedule_name": "nightly_refresh"}

    result = defs.resolve_job_def("refresh").execute_in_process(
        instance=instance, raise_on_error=False, tags=schedule_tags
    )
    assert result.success
    with build_run_status_sensor_context(
        sensor_name="alert_on_degraded_night",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
        resources={"warehouse": warehouse},
    ) as context:
        sensors["alert_on_degraded_night"](context)
    (alert,) = webhook.bodies
    assert alert["status"] == "degraded" and alert["started_by"] == "schedule nightly_refresh"
    assert alert["quarantined_files"] == ["ips_quarterly/broken.csv"] and alert["run_id"] == result.run_id
    assert alert["counts"]["loaded"] == 14 and alert["counts"]["quarantined"] == 1

    # a run that fails (its inbox is gone): the run-failure sensor
    missing = resolve_paths(tmp_path / "gone", tmp_path / "wh2" / "care_outcomes.duckdb")
    failed = (
        build_defs(paths)
        .resolve_job_def("refresh")
        .execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=schedule_tags,
            resources={"warehouse": WarehouseResource(inbox=str(missing.inbox), warehouse=str(missing.warehouse))},
        )
    )
    assert not failed.success
    with build_run_status_sensor_context(
        sensor_name="alert_on_failed_night",
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(),
        resources={"warehouse": WarehouseResource(inbox=str(missing.inbox), warehouse=str(missing.warehouse))},
    ) as context:
        sensors["alert_on_failed_night"](context.for_run_failure())
    alert = webhook.bodies[-1]
    assert (alert["status"], alert["started_by"]) == ("failed", "schedule nightly_refresh")
    assert alert["exit_code"] in (1, 2) and alert["cause"]
    assert_no_personal_data(json.dumps(webhook.bodies))

    # a run of the command line alerts from the command line, not again from the daemon
    cli_run = result.dagster_run.with_tags({**result.dagster_run.tags, STARTED_BY_TAG: "cli"})
    assert alert_for_run(cli_run, instance, paths) == []
    assert len(webhook.bodies) == 2
