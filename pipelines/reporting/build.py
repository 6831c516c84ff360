"""Every night's reports: one per programme, one per provider, an index, each with a PDF where Chromium is there.

They are written into a new folder and published by turning the ``reports`` link to it (``os.replace`` of a
symbolic link), so a reader sees last night's set or tonight's, never a mix; the set before stays beside it for a
reader still holding its files, older ones are removed.

A report that says tonight exactly what it said in the set before (everything but the date of its marts) is that
report: its HTML and PDF are taken over (hard links), keeping the date of the marts it was made from. On a national
night where only outflow exports came, 1,000 programme reports are not printed again (0.2 s of Chromium each).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.reporting.chromium import Chromium, ChromiumUnavailable, find_chromium
from pipelines.reporting.common import Privacy, Shared, file_names, render, serving, slug
from pipelines.reporting.ips import IpsReport, programs
from pipelines.reporting.national import NationalReport, periods
from pipelines.reporting.outflow import OutflowReport, providers
from pipelines.warehouse import turn_link

log = logging.getLogger(__name__)
SETS_DIR = ".reports"  # beside the link: the published set and the one before
CONTENTS = "contents.json"  # in a set: each report's digest, what it says apart from the date of its marts
DATE_MARK = "\x00marts-date\x00"  # where a report's date goes, while its digest is taken


@dataclass
class ReportSet:
    directory: Path
    ips: dict[str, Path] = field(default_factory=dict)  # program_id -> HTML
    outflow: dict[str, Path] = field(default_factory=dict)  # provider -> HTML
    national: dict[str, Path] = field(default_factory=dict)  # period_code -> HTML (the latest quarter and year)
    pdfs: list[Path] = field(default_factory=list)
    unchanged: int = 0  # reports taken over from the set before (HTML and PDF), the same in all but their date
    pdf_problem: str | None = None  # why there are no PDFs
    failed: list[str] = field(default_factory=list)  # reports that could not be made, with the reason
    seconds: float = 0.0

    def line(self) -> str:
        """The refresh summary's line."""
        national = f"national {', '.join(self.national)}, " if self.national else ""
        made = f"{national}{len(self.ips)} IPS, {len(self.outflow)} outflow in {self.directory}/index.html"
        pdf = f"PDF {len(self.pdfs)}" if self.pdf_problem is None else f"no PDF: {self.pdf_problem}"
        if self.unchanged:
            pdf += f"; {self.unchanged} unchanged from the set before"
        failed = f"; not made: {'; '.join(self.failed)}" if self.failed else ""
        return f"reports:   {made} ({pdf}){failed}"


def write_reports(serving_file: Path, target: Path, privacy: Privacy, chromium_setting: str = "") -> ReportSet:
    """Render every report of the serving file into a new set and publish it as ``target``. ``chromium_setting``:
    '' finds Chromium on PATH, 'off' makes no PDF, else the executable (see chromium.find_chromium)."""
    started_at = time.monotonic()
    sets = target.parent / SETS_DIR
    sets.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    folder = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=sets))
    folder.chmod(0o755)  # readable by the BI and web server users, as the serving file is
    (folder / "ips").mkdir()
    (folder / "outflow").mkdir()
    (folder / "national").mkdir()
    result = ReportSet(directory=target)
    chromium, result.pdf_problem = chromium_or_reason(chromium_setting)
    started = start_browser(chromium) if chromium is not None else None  # while the HTML is written
    try:
        return _write_set(serving_file, folder, target, result, privacy, chromium, started, started_at)
    finally:
        if started is not None:
            _close(started)


def _write_set(
    serving_file: Path,
    folder: Path,
    target: Path,
    result: ReportSet,
    privacy: Privacy,
    chromium: str | None,
    started: Future[Chromium] | None,
    started_at: float,
) -> ReportSet:
    before = Before.of(target, with_pdf=chromium is not None)
    index_programs, index_providers = [], []
    to_print: list[Path] = []
    with serving(serving_file) as con:
        shared = Shared(con, whole_set=True)
        when = shared.published
        shared.published = DATE_MARK

        def write(path: Path, html: str) -> None:
            if before.take(path, html):
                result.unchanged += 1
            else:
                path.write_text(html.replace(DATE_MARK, when), encoding="utf-8")
                to_print.append(path)

        index_national = []
        for kind, code in sorted(periods(con).items(), key=lambda kv: kv[0] != "quarter"):
            path = folder / "national" / f"{code}.html"
            try:
                report = NationalReport(con, code, shared)
                write(path, report.html())
            except Exception as exc:
                log.exception("national overview of %s", code)
                result.failed.append(f"national {code}: {exc}")
                continue
            result.national[code] = path
            label = "Kwartaal" if kind == "quarter" else "Jaar"
            index_national.append({"label": f"{label} {report.period_label}", "html": f"national/{path.name}"})
        for p in programs(con):
            name = p["program_id"]
            path = folder / "ips" / f"{program_file_name(name)}.html"
            try:
                report = IpsReport(con, name, None, privacy, shared)
                write(path, report.html())
            except Exception as exc:  # one report's fault must not cost the others theirs
                log.exception("IPS report of %s", name)
                result.failed.append(f"IPS {name}: {exc}")
                continue
            result.ips[name] = path
            index_programs.append({**p, "years": " en ".join(map(str, report.years)), "html": f"ips/{path.name}"})
        found = providers(con)
        names = file_names([p["provider"] for p in found])
        for p in found:
            path = folder / "outflow" / f"{names[p['provider']]}.html"
            try:
                write(path, OutflowReport(con, p["provider"], None, privacy, shared).html())
            except Exception as exc:
                log.exception("outflow report of %s", p["provider"])
                result.failed.append(f"outflow {p['provider']}: {exc}")
                continue
            result.outflow[p["provider"]] = path
            index_providers.append({**p, "html": f"outflow/{path.name}"})
    if chromium is not None:
        try:
            print_pdfs(chromium, to_print, started)
        except ChromiumUnavailable as exc:
            result.pdf_problem = str(exc)
    pages = [*result.national.values(), *result.ips.values(), *result.outflow.values()]
    if result.pdf_problem is None:
        result.pdfs = sorted(p.with_suffix(".pdf") for p in pages if p.with_suffix(".pdf").exists())
    before.record(folder, pages)
    for entry in index_national + index_programs + index_providers:
        pdf = folder / Path(entry["html"]).with_suffix(".pdf")
        entry["pdf"] = pdf.relative_to(folder).as_posix() if pdf.exists() else None
    (folder / "index.html").write_text(
        render("index.html.j2", national=index_national, programs=index_programs, providers=index_providers,
               published=when,
               pdf_note=f"Geen PDF's: {result.pdf_problem}." if result.pdf_problem else None),
        encoding="utf-8",
    )  # fmt: skip
    turn_link(folder, target)  # the set before stays, older ones go
    # the paths as a reader opens them: through the link
    result.ips = {k: target / v.relative_to(folder) for k, v in result.ips.items()}
    result.outflow = {k: target / v.relative_to(folder) for k, v in result.outflow.items()}
    result.national = {k: target / v.relative_to(folder) for k, v in result.national.items()}
    result.pdfs = [target / p.relative_to(folder) for p in result.pdfs]
    result.seconds = time.monotonic() - started_at
    return result


def program_file_name(program_id: str) -> str:
    """The programme code as it is ('GGNET'), unless it holds characters a file name should not."""
    return program_id if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", program_id) else slug(program_id)


PAGES_PER_BROWSER = 20  # below this many pages a second browser costs more than it saves


def print_pdfs(chromium: str, pages: list[Path], started: Future[Chromium] | None = None) -> list[Path]:
    """A PDF beside each HTML: one browser, or two side by side for a national set (1.35x as fast on 2 cores; a
    browser costs 0.4 s to start). ``started``: a browser started beforehand (while the HTML was written), the first
    one to use, closed once it has printed (its starter closes it where nothing was printed)."""
    browsers = browsers_for(len(pages))
    if not pages:
        return []
    firsts = [started, *[None] * (browsers - 1)]
    with ThreadPoolExecutor(browsers) as pool:  # the threads wait on the browsers' pipes
        shares = list(pool.map(_print, [chromium] * browsers, [pages[i::browsers] for i in range(browsers)], firsts))
    return sorted(pdf for share in shares for pdf in share)


def browsers_for(pages: int) -> int:
    """How many browsers print_pdfs prints this many pages with."""
    return min(os.cpu_count() or 1, 2) if pages >= PAGES_PER_BROWSER else 1


def start_browser(chromium: str) -> Future[Chromium]:
    """A browser starting in the background (its own processes, the machine's other core), for print_pdfs."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="chromium")
    try:
        return pool.submit(Chromium, chromium)
    finally:
        pool.shutdown(wait=False)  # its thread ends once the browser has started


def _close(started: Future[Chromium]) -> None:
    """Close a browser started beforehand (where it printed, it is closed already: a second close does nothing)."""
    with contextlib.suppress(Exception):
        started.result().close()


def _print(chromium: str, pages: list[Path], started: Future[Chromium] | None) -> list[Path]:
    done = []
    with started.result() if started is not None else Chromium(chromium) as browser:
        for page in pages:
            pdf = page.with_suffix(".pdf")
            browser.pdf(page, pdf)
            done.append(pdf)
    return done


class Before:
    """The set published before, as far as tonight's reports can take over from it."""

    def __init__(self, folder: Path | None, digests: dict[str, str], with_pdf: bool):
        self.folder, self.with_pdf = folder, with_pdf
        self.digests = digests  # of the set before: report (relative path) -> digest
        self.made: dict[str, str] = {}  # of tonight's set

    @classmethod
    def of(cls, target: Path, with_pdf: bool) -> Before:
        folder = target.resolve() if target.is_symlink() else None
        try:
            digests = json.loads((folder / CONTENTS).read_text(encoding="utf-8")) if folder else {}
        except (OSError, ValueError):  # no set before, or one of an earlier version: every report is made anew
            digests = {}
        return cls(folder, digests if isinstance(digests, dict) else {}, with_pdf)

    def take(self, path: Path, html: str) -> bool:
        """Whether the report at ``path`` (``html`` with the date marked) is the set before's, and was taken over:
        its HTML, and its PDF where PDFs are made (a report without one is made anew, to get it)."""
        name = _in_set(path)
        digest = hashlib.sha256(html.encode("utf-8")).hexdigest()
        self.made[name] = digest
        if self.folder is None or self.digests.get(name) != digest:
            return False
        old = self.folder / name
        files = [old, old.with_suffix(".pdf")] if self.with_pdf else [old]
        if not all(f.is_file() for f in files):
            return False
        try:
            for f in files:
                _link_or_copy(f, path.with_name(f.name))
        except OSError:
            for f in files:
                path.with_name(f.name).unlink(missing_ok=True)
            return False
        return True

    def record(self, folder: Path, pages: list[Path]) -> None:
        """Write tonight's digests into its set, for the reports it holds."""
        held = {_in_set(p) for p in pages}
        contents = {k: v for k, v in sorted(self.made.items()) if k in held}
        (folder / CONTENTS).write_text(json.dumps(contents, indent=0), encoding="utf-8")


def _in_set(page: Path) -> str:
    """A report's name within its set, as contents.json keys it: 'ips/GGNET.html'."""
    return f"{page.parent.name}/{page.name}"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def chromium_or_reason(setting: str) -> tuple[str | None, str | None]:
    """(executable, None) or (None, why there will be no PDF), from the setting (''=find one, 'off', a path)."""
    try:
        return find_chromium({"CARE_OUTCOMES_CHROMIUM": setting}), None
    except ChromiumUnavailable as exc:
        return None, str(exc)
