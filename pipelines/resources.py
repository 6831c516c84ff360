"""The warehouse resource: one place that knows the inbox, the working database and the serving file."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, InitResourceContext

from pipelines.settings import Paths, resolve_paths


class WarehouseBusy(Exception):
    """Another process is refreshing the same warehouse."""


_held: dict[Path, list] = {}  # lock file -> [open file, depth]: re-entrant within one process
_held_guard = threading.Lock()


@contextmanager
def writer_lock(paths: Paths):
    """One refresh per warehouse at a time, whoever starts it (`care-outcomes refresh`, the schedule, the sensor,
    the UI): DuckDB allows one writing process. Re-entrant in a process, so the CLI's run takes it once."""
    lock_file = paths.lock_file
    with _held_guard:
        if lock_file in _held:
            _held[lock_file][1] += 1
        else:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_file.open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise WarehouseBusy(
                    f"another refresh is writing {paths.warehouse} (lock {lock_file}); wait for it to finish"
                ) from None
            _held[lock_file] = [handle, 1]
    try:
        yield
    finally:
        with _held_guard:
            _held[lock_file][1] -= 1
            if _held[lock_file][1] == 0:
                _held.pop(lock_file)[0].close()  # closing the file releases the lock


class WarehouseResource(ConfigurableResource):
    """Paths come from the fields, else CARE_OUTCOMES_INBOX / CARE_OUTCOMES_WAREHOUSE, else the bundled sample."""

    inbox: str | None = None
    warehouse: str | None = None

    def paths(self) -> Paths:
        return resolve_paths(self.inbox, self.warehouse)

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext):
        """A run holds the writer lock from its first step to its last (the job runs in one process);
        a sensor tick, which only lists the inbox, does not."""
        if context.dagster_run is None:
            yield self
            return
        with writer_lock(self.paths()):
            yield self

    @contextmanager
    def connect(self, read_only: bool = False):
        """A connection to the working database, closed on exit so dbt can open it next."""
        work_db = self.paths().work_db
        work_db.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(work_db), read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def dbt_env(self):
        """dbt reads the working database path from CARE_OUTCOMES_WORK_DB (dbt/profiles.yml)."""
        previous = os.environ.get("CARE_OUTCOMES_WORK_DB")
        os.environ["CARE_OUTCOMES_WORK_DB"] = str(self.paths().work_db)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("CARE_OUTCOMES_WORK_DB", None)
            else:
                os.environ["CARE_OUTCOMES_WORK_DB"] = previous


def dbt_executable() -> str:
    """The dbt installed beside this Python (the project's .venv), else the one on PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
