"""The warehouse resource: one place that knows the inbox, the working database and the serving file."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import ConfigurableResource

from pipelines.settings import Paths, resolve_paths


class WarehouseResource(ConfigurableResource):
    """Paths come from the fields, else CARE_OUTCOMES_INBOX / CARE_OUTCOMES_WAREHOUSE, else the bundled sample."""

    inbox: str | None = None
    warehouse: str | None = None

    def paths(self) -> Paths:
        return resolve_paths(self.inbox, self.warehouse)

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
