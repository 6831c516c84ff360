"""HTML to PDF in headless Chromium, offline: one browser for all reports of a night, driven over
``--remote-debugging-pipe`` (the DevTools protocol on two pipes, no port, no network).

Chromium is optional: where it is missing the HTML reports still come, and the summary says why there is no PDF.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

from pipelines.warehouse import temp_folder

CHROMIUM_ENV = "CARE_OUTCOMES_CHROMIUM"  # a Chromium or Chrome to use; 'off' makes no PDF
CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
# headless, and nothing that reaches out: no updates, no sync, no background traffic, no first-run page
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-pipe",
]
TIMEOUT = 60.0  # seconds for one answer of the browser
PRINT = {  # Page.printToPDF as the reader would print: A4 from the page's @page rule, backgrounds on
    "preferCSSPageSize": True,
    "printBackground": True,
    "displayHeaderFooter": False,
    # tagged: headings, tables and reading order for a screen reader (accessible PDF, as Dutch public bodies must
    # publish); it costs a third of the print time (0.13 s to 0.19 s for a programme's report)
    "generateTaggedPDF": True,
}


class ChromiumUnavailable(Exception):
    """No PDF: the reason, in one line, for the summary."""


def find_chromium(environ: dict | None = None) -> str:
    environ = os.environ if environ is None else environ
    chosen = environ.get(CHROMIUM_ENV, "").strip()
    if chosen.lower() == "off":
        raise ChromiumUnavailable(f"PDF switched off ({CHROMIUM_ENV}=off)")
    if chosen:
        found = shutil.which(chosen)
        if not found:
            raise ChromiumUnavailable(f"{CHROMIUM_ENV}={chosen} is not an executable")
        return found
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumUnavailable(
        "no Chromium found for the PDFs (Debian: apt-get install chromium; or set " + CHROMIUM_ENV + ")"
    )


def _above(fd: int, lowest: int = 10) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return high


class Chromium:
    """A headless browser and one page; ``call`` sends a DevTools command and waits for its answer."""

    def __init__(self, executable: str):
        self._closed = False
        self.profile = temp_folder("chromium")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser's ends above fd 4, so that placing them at 3 and 4 cannot overwrite one another
        to_browser_r, from_browser_w = _above(to_browser_r), _above(from_browser_w)
        # bash (dash takes one-digit descriptors only) puts the pipes where Chromium expects them (3: commands in,
        # 4: answers out); no preexec_fn, which is unsafe in a process with threads (Dagster's)
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        try:
            self.process = subprocess.Popen(
                ["bash", "-c", script, executable, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
                pass_fds=(to_browser_r, from_browser_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: the browser's helper processes end with it
            )
        except OSError as exc:
            raise ChromiumUnavailable(f"Chromium did not start: {exc}") from exc
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._frame: str | None = None
        self.events: list[dict] = []
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Page.enable", session=self.session)
        except Exception:
            self.close()
            raise

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChromiumUnavailable("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise ChromiumUnavailable(f"Chromium stopped (exit code {self.process.poll()})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = memoryview(json.dumps(message).encode() + b"\0")
        while data:  # a report's HTML is more than a pipe holds at once
            try:
                data = data[os.write(self._to_browser, data) :]
            except OSError as exc:  # the browser has gone (its end of the pipe closed)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(1)
                raise ChromiumUnavailable(f"Chromium stopped (exit code {self.process.poll()})") from exc
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise ChromiumUnavailable(f"Chromium refused {method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, event: str, deadline_seconds: float = TIMEOUT) -> dict:
        for i, seen in enumerate(self.events):
            if seen.get("method") == event:
                return self.events.pop(i)
        deadline = time.monotonic() + deadline_seconds
        while True:
            message = self._read_message(deadline)
            if message.get("method") == event:
                return message
            self.events.append(message)

    def open(self, path: Path) -> None:
        """Load a file and wait until it (and everything it asks for) has loaded."""
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=self.session)
        self.wait_for("Page.loadEventFired")

    def show(self, html: str) -> None:
        """Put ``html`` in the page as its document, without a navigation (a report is self-contained: its styles
        inline, its images data): a third of the time of opening the file, for the same print."""
        self.events.clear()
        if self._frame is None:
            self._frame = self.call("Page.getFrameTree", session=self.session)["frameTree"]["frame"]["id"]
        self.call("Page.setDocumentContent", {"frameId": self._frame, "html": html}, session=self.session)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session)
        return result["result"].get("value")

    def pdf(self, html: Path, pdf: Path) -> None:
        """Print ``html`` as the reader would (A4 from the page's @page rule, backgrounds on), written aside and
        moved in whole."""
        self.show(html.read_text(encoding="utf-8"))
        result = self.call("Page.printToPDF", PRINT, session=self.session)
        tmp = pdf.with_name(f".{pdf.name}.tmp")
        tmp.write_bytes(base64.b64decode(result["data"]))
        os.replace(tmp, pdf)

    def close(self) -> None:
        if self._closed:  # its descriptors may be another file's by now
            return
        self._closed = True
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # a helper process of the browser may still write into its profile folder as the browser ends: end them
        # all, then remove the folder; what cannot be removed is left in the temporary folder, never a failed night
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for _ in range(20):
            shutil.rmtree(self.profile.name, ignore_errors=True)
            if not os.path.exists(self.profile.name):
                break
            time.sleep(0.05)
        self.profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
