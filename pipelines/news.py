"""Whether there is anything new for a refresh: the inbox, the repairs asked for and the project's own files, against
what the last publish was built from. Light on purpose (no Dagster, no dbt): a night with nothing new is answered
from here in about a second, by the command line and by the schedule and sensor alike."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb

from pipelines.ingest.load import inbox_entries
from pipelines.ingest.registry import CONTRACTS_DIR, Registry
from pipelines.transform.project import project_files
from pipelines.warehouse import Paths, has_table, lit


def inbox_news(
    paths: Paths, registry: Registry, outputs: tuple[str, ...] = ("reports",)
) -> tuple[str, dt.datetime | None]:
    """(signature of what a refresh would be built from now, when the last publish was built from the same).

    The signature covers every inbox file of the registry's sources (path, size, modification time), the
    repairs asked for (retries, retractions), the dbt project's files and the registry's YAML files. The
    second value is None when anything differs, nothing was published yet, or the last publish did not make every
    one of ``outputs`` whole (a night killed in its reports or its PostgreSQL publish): then there is news."""
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
                    "select published_at, news_signature, run_id from audit.publishes "
                    "order by published_at desc limit 1"
                ).fetchall()
            if last and outputs:
                made = (
                    {
                        output
                        for (output,) in con.execute(
                            f"select output from audit.publish_outputs where run_id = {lit(last[0][2])}"
                        ).fetchall()
                    }
                    if has_table(con, "audit", "publish_outputs")
                    else set()
                )
                if not set(outputs) <= made:
                    last = []
        finally:
            con.close()
    digest.update(repr(tuple(repairs)).encode())
    signature = digest.hexdigest()
    unchanged = bool(last) and last[0][1] == signature and paths.warehouse.exists()
    return signature, (last[0][0] if unchanged else None)


def inbox_snapshot(registry: Registry, inbox: Path) -> dict[str, list[int]]:
    """Every entry of every source folder: its name -> [size, mtime in ns] (of the entry itself: a link is not
    followed). Cheap: no file is read."""
    snapshot = {}
    for source in registry.sources.values():
        for entry in inbox_entries(inbox, source):  # exactly the entries the ingest decides (links as links)
            snapshot[entry.name] = [entry.size, entry.mtime_ns]
    return snapshot


def new_files(snapshot: dict[str, list[int]], cursor: str | None) -> list[str]:
    """Files that were not in the cursor's snapshot, or changed since."""
    seen = json.loads(cursor) if cursor else {}
    return sorted(name for name, signature in snapshot.items() if seen.get(name) != signature)
