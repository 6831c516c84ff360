"""The Dagster resource over the warehouse: its paths, the writer lock a run holds, connections to the working
database. Apart from pipelines/warehouse.py, which stays free of Dagster so that a night with nothing new is answered
before Dagster is loaded (pipelines/news.py)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, InitResourceContext

from pipelines.warehouse import DEFAULT_MEMORY_LIMIT, Paths, prepare_warehouse, writer_lock


class WarehouseResource(ConfigurableResource):
    """The inbox, the serving file and extra source folders, as resolved by `resolve_paths` (the CLI's flags, or the
    environment when the code location loads)."""

    inbox: str
    warehouse: str
    sources_dirs: list[str] = []
    memory_limit: str = DEFAULT_MEMORY_LIMIT  # DuckDB's, for the connections that build (see memory_limit())

    @classmethod
    def for_paths(cls, paths: Paths, memory: str = DEFAULT_MEMORY_LIMIT) -> WarehouseResource:
        return cls(
            inbox=str(paths.inbox),
            warehouse=str(paths.warehouse),
            sources_dirs=[str(p) for p in paths.sources_dirs],
            memory_limit=memory,
        )

    def paths(self) -> Paths:
        return Paths(Path(self.inbox), Path(self.warehouse), tuple(Path(p) for p in self.sources_dirs))

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext):
        """A run holds the writer lock from its first step to its last (the job runs in one process);
        a sensor tick, which only lists the inbox, does not."""
        if context.dagster_run is None:
            yield self
            return
        with writer_lock(self.paths()):
            prepare_warehouse(self.paths())
            self.bind_key()
            yield self

    def bind_key(self) -> None:
        """The working database keeps the fingerprint of the pseudonymisation key it is built with; a run with another
        key stops here, before anything is loaded (privacy.KEY_DIFFERS)."""
        from pipelines.ingest.pseudonymise import current_key
        from pipelines.privacy import bind_key, key_fingerprint

        paths = self.paths()
        with self.connect() as con:
            bind_key(con, key_fingerprint(current_key(paths.inbox)), paths.warehouse)

    @contextmanager
    def connect(self, read_only: bool = False):
        """A connection to the working database, closed on exit so dbt can open it next."""
        work_db = self.paths().work_db
        work_db.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(work_db), read_only=read_only, config={"memory_limit": self.memory_limit})
        try:
            yield con
        finally:
            con.close()
