"""Whether there is anything new for a refresh: the inbox, the repairs asked for and the project's own files, against
what the last publish was built from. Light on purpose (no Dagster, no dbt): a night with nothing new is answered
from here in about a second, by the command line and by the schedule and sensor alike."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb

from pipelines.ingest.load import inbox_files
from pipelines.ingest.registry import CONTRACTS_DIR, Registry
from pipelines.transform.project import project_files
from pipelines.warehouse import Paths, has_table


def inbox_news(paths: Paths, registry: Registry) -> tuple[str, dt.datetime | None]:
    """(signature of what a refresh would be built from now, when the last publish was built from the same).

    The signature covers every inbox file of the registry's sources (path, size, modification time), the
    repairs asked for (retries, retractions), the dbt project's files and the registry's YAML files. The
    second value is None when anything differs or nothing was published yet: then there is news."""
    digest = hashlib.sha256(json.dumps(inbox_snapshot(registry, paths.inbox), sort_keys=True).encode())
    yamls = [Path(s.path) for s in registry.sources.values() if s.path] + sorted(CONTRACTS_DIR.glob("*.yaml"))
    for path in sorted(yamls + project_files()):
        digest.update(f"{path}|{path.stat().st_mtime_ns}|{path.stat().st_size}\n".encode())
    repairs, last = (0, 0), None
    if paths.work_db.exists():
        try:
            con = duckdb.connect(str(paths.work_db), read_only=True)
        except duckdb.Error:  # damaged or busy: a refresh decides (and names the fault)
            return digest.hexdigest(), None
        try:
            if has_table(con, "audit", "file_retractions"):
                repairs = con.execute(
                    "select (select count(*) from audit.file_retries), (select count(*) from audit.file_retractions)"
                ).fetchall()[0]
            if has_table(con, "audit", "publishes"):
                last = con.execute(
                    "select published_at, news_signature from audit.publishes order by published_at desc limit 1"
                ).fetchall()
        finally:
            con.close()
    digest.update(repr(tuple(repairs)).encode())
    signature = digest.hexdigest()
    unchanged = bool(last) and last[0][1] == signature and paths.warehouse.exists()
    return signature, (last[0][0] if unchanged else None)


def inbox_snapshot(registry: Registry, inbox: Path) -> dict[str, list[int]]:
    """Every file of every source folder: inbox path -> [size, mtime in ns]. Cheap: no file is read."""
    snapshot = {}
    for source in registry.sources.values():
        for path in inbox_files(inbox, source):  # exactly the files the ingest will read
            stat = path.stat()
            snapshot[path.relative_to(inbox).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return snapshot


def new_files(snapshot: dict[str, list[int]], cursor: str | None) -> list[str]:
    """Files that were not in the cursor's snapshot, or changed since."""
    seen = json.loads(cursor) if cursor else {}
    return sorted(name for name, signature in snapshot.items() if seen.get(name) != signature)
