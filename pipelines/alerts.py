"""Alerts after a night that is not clean: one JSON POST to a webhook and/or one e-mail.

A night is not clean when the refresh exits 1 or 2, quarantines a file, a non-blocking check warns, or a programme's
latest quarterly submission is missing. The message names the warehouse, the status, the exit code, the one-line
root cause, counts and file names (escaped), the checks by name and the programmes missing a quarter, and a link to
the run in the Dagster UI where ``CARE_OUTCOMES_UI_URL`` is set. It never holds a cell value, a client id or a
quarantine reason: a reason quotes the file, and who reads an alert may not read the file.

Settings (environment, or the ``.env`` file):

- ``CARE_OUTCOMES_ALERT_WEBHOOK``: an http(s) URL that gets the JSON;
- ``CARE_OUTCOMES_ALERT_SMTP`` (``host:port``; port 465 is TLS, another port uses STARTTLS where the server offers
  it), ``CARE_OUTCOMES_ALERT_TO`` (comma-separated), ``CARE_OUTCOMES_ALERT_FROM``, and where the server wants a login
  ``CARE_OUTCOMES_ALERT_SMTP_USER`` / ``CARE_OUTCOMES_ALERT_SMTP_PASSWORD``;
- ``CARE_OUTCOMES_ALERT_ATTEMPTS`` (default 4) and ``CARE_OUTCOMES_ALERT_BACKOFF`` (seconds before the second attempt,
  doubling after; default 2).

A webhook or mail server that fails never changes the refresh's result: the attempt is retried with back-off, and
what finally happened is one line on the terminal and in the run log.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from pipelines.warehouse import shown

ENV = "CARE_OUTCOMES_ALERT_"
TIMEOUT = 10  # seconds for one attempt to connect and deliver


class AlertSettingError(ValueError):
    """An alert setting that cannot be used (said before the night starts)."""


@dataclass
class Alert:
    """What one night that was not clean says; every text already escaped and free of cell values."""

    warehouse: str
    status: str  # failed (nothing published) | published_with_failures | degraded
    exit_code: int
    cause: str | None
    counts: dict[str, int] = field(default_factory=dict)
    quarantined_files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_submissions: list[str] = field(default_factory=list)
    run_id: str | None = None
    run_url: str | None = None
    started_by: str = "command line"
    host: str = field(default_factory=socket.gethostname)

    @property
    def subject(self) -> str:
        what = {"failed": "refresh failed", "published_with_failures": "published, but not every output",
                "degraded": "published with problems"}[self.status]  # fmt: skip
        return f"care-outcomes: {what} ({self.warehouse})"

    def text(self) -> str:
        lines = [self.subject, "", f"exit code: {self.exit_code}", f"started by: {self.started_by}"]
        if self.cause:
            lines.append(f"cause: {self.cause}")
        lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        for title, items in (
            ("quarantined", self.quarantined_files),
            ("skipped", self.skipped_files),
            ("failed checks", self.failed_checks),
            ("warnings", self.warnings),
            ("missing submissions", self.missing_submissions),
        ):
            lines += [f"{title}:"] + [f"  {item}" for item in items] if items else []
        if self.run_url:
            lines.append(f"run: {self.run_url}")
        lines.append(f"host: {self.host}")
        return "\n".join(lines) + "\n"

    def payload(self) -> dict:
        return {"event": "care_outcomes.refresh", **asdict(self)}


def _clean(text: str | None, limit: int = 300, what: str = "text") -> str | None:
    """One escaped line, cut to ``limit``; withheld where it looks like personal data (an e-mail address, a BSN, a
    phone number, an IBAN: the same screen as the inbox's free-text columns), as a file's name may."""
    if text is None:
        return None
    from pipelines.ingest.screen import looks_personal

    line = " ".join(str(text).split())
    kind = looks_personal(line)
    if kind is not None:
        return f"({what} withheld: it may hold personal data ({kind}); see the server)"
    return shown(line)[:limit]


def alert_for(
    *,
    warehouse,
    exit_code: int,
    published: bool,
    cause: str | None,
    files: list = (),
    failed_checks: list[str] = (),
    warnings: list[str] = (),
    missing: list[str] = (),
    run_id: str | None = None,
    started_by: str = "command line",
    environ: Mapping[str, str] = os.environ,
) -> Alert | None:
    """The alert of a finished night, or None for a clean one. ``files`` are the night's FileLoad records."""
    by_status: dict[str, list[str]] = {}
    for f in files:
        by_status.setdefault(f.status, []).append(_clean(f.file_name, 200, "file name"))
    quarantined, skipped = by_status.get("quarantined", []), by_status.get("skipped", [])
    if exit_code == 0 and not (quarantined or skipped or warnings or missing):
        return None
    status = "failed" if not published else ("published_with_failures" if exit_code else "degraded")
    ui = environ.get("CARE_OUTCOMES_UI_URL", "").rstrip("/")
    return Alert(
        warehouse=_clean(str(warehouse), 500),
        status=status,
        exit_code=exit_code,
        cause=_clean(cause, what="cause"),
        counts={
            "loaded": len(by_status.get("loaded", [])),
            "quarantined": len(quarantined),
            "duplicate": len(by_status.get("duplicate", [])),
            "skipped": len(skipped),
            "failed_checks": len(failed_checks),
            "warnings": len(warnings),
            "missing_submissions": len(missing),
        },
        quarantined_files=quarantined,
        skipped_files=skipped,
        failed_checks=[_clean(c, 200) for c in failed_checks],
        warnings=[_clean(c, 200) for c in warnings],
        missing_submissions=[_clean(m, 100) for m in missing],
        run_id=run_id,
        run_url=f"{ui}/runs/{run_id}" if ui and run_id else None,
        started_by=started_by,
    )


def alert_of_outcome(outcome, *, warehouse, missing: list[str], started_by: str = "command line") -> Alert | None:
    """The alert of a finished refresh run (an orchestration.RunOutcome), whoever started it."""
    return alert_for(
        warehouse=warehouse,
        exit_code=outcome.exit_code,
        published=outcome.published,
        cause=outcome.failure or outcome.step_failure,
        files=outcome.files,
        failed_checks=[f"{c.asset}: {c.name}" for c in outcome.failed_checks],
        warnings=[f"{c.asset}: {c.name}" for c in outcome.warnings],
        missing=missing,
        run_id=outcome.run_id,
        started_by=started_by,
    )


# ---- delivery ------------------------------------------------------------------------------------------------


def check_settings(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse settings that could never deliver, before a night starts (exit 2 with one line)."""
    url = environ.get(ENV + "WEBHOOK", "").strip()
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
        raise AlertSettingError(f"{ENV}WEBHOOK must be an http:// or https:// URL")
    smtp = environ.get(ENV + "SMTP", "").strip()
    if smtp:
        host, _, port = smtp.rpartition(":")
        if not host or not port.isdigit():
            raise AlertSettingError(f"{ENV}SMTP must be host:port, e.g. mail.example.nl:587")
        if not environ.get(ENV + "TO", "").strip() or not environ.get(ENV + "FROM", "").strip():
            raise AlertSettingError(f"{ENV}SMTP needs {ENV}TO and {ENV}FROM as well")
    for name, cast in (("ATTEMPTS", int), ("BACKOFF", float)):
        value = environ.get(ENV + name)
        try:
            if value is not None and cast(value) < (1 if name == "ATTEMPTS" else 0):
                raise ValueError
        except ValueError:
            raise AlertSettingError(f"{ENV}{name}={value!r} is not a usable number") from None


def where(url: str) -> str:
    """A webhook named without its path or query (they often hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def _post(url: str, alert: Alert) -> None:
    import urllib.request

    if urlsplit(url).scheme not in ("http", "https"):  # never a file: or ftp: URL, whatever the setting says
        raise AlertSettingError(f"{ENV}WEBHOOK must be an http:// or https:// URL")

    body = json.dumps(alert.payload(), ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "care-outcomes"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (the scheme is checked)
        if not 200 <= response.status < 300:
            raise OSError(f"HTTP {response.status}")


def _mail(environ: Mapping[str, str], alert: Alert) -> None:
    import smtplib
    from email.message import EmailMessage

    host, _, port = environ[ENV + "SMTP"].strip().rpartition(":")
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = environ[ENV + "FROM"].strip()
    message["To"] = ", ".join(a.strip() for a in environ[ENV + "TO"].split(",") if a.strip())
    message.set_content(alert.text())
    message.add_attachment(
        json.dumps(alert.payload(), ensure_ascii=False, indent=2), subtype="json", filename="care-outcomes-alert.json"
    )
    smtp_class = smtplib.SMTP_SSL if port == "465" else smtplib.SMTP
    with smtp_class(host, int(port), timeout=TIMEOUT) as smtp:
        if smtp_class is smtplib.SMTP:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls()
                smtp.ehlo()
        user = environ.get(ENV + "SMTP_USER")
        if user:
            smtp.login(user, environ.get(ENV + "SMTP_PASSWORD", ""))
        smtp.send_message(message)


def _with_retries(send: Callable[[], None], attempts: int, backoff: float, sleep=time.sleep) -> tuple[int, str | None]:
    """(attempts made, the last error or None when delivered)."""
    error = None
    for attempt in range(1, attempts + 1):
        try:
            send()
            return attempt, None
        except Exception as exc:  # a failing channel never changes the night's result
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
            if attempt < attempts:
                sleep(backoff * 2 ** (attempt - 1))
    return attempts, error


def deliver(alert: Alert | None, environ: Mapping[str, str] = os.environ, sleep=time.sleep) -> list[str]:
    """Send the alert on every configured channel; one line per channel, for the terminal and the run log."""
    if alert is None:
        return []
    attempts = int(environ.get(ENV + "ATTEMPTS", "4"))
    backoff = float(environ.get(ENV + "BACKOFF", "2"))
    out = []
    url = environ.get(ENV + "WEBHOOK", "").strip()
    if url:
        tried, error = _with_retries(lambda: _post(url, alert), attempts, backoff, sleep)
        out.append(
            f"alert:     sent to {where(url)}" if error is None
            else f"alert:     not sent to {where(url)} after {tried} attempt(s): {error}"
        )  # fmt: skip
    if environ.get(ENV + "SMTP", "").strip():
        tried, error = _with_retries(lambda: _mail(environ, alert), attempts, backoff, sleep)
        to = environ.get(ENV + "TO", "").strip()
        out.append(
            f"alert:     mailed to {to}" if error is None
            else f"alert:     not mailed to {to} after {tried} attempt(s): {error}"
        )  # fmt: skip
    return out


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get(ENV + "WEBHOOK", "").strip() or environ.get(ENV + "SMTP", "").strip())
