"""The Dagster instance of care-outcomes: Dagster's own SQLite storage, with the event log kept on open connections.

Dagster's SQLite event log opens a new connection for every event it stores and closes it after the commit; closing
the last connection of a WAL database checkpoints it. A refresh stores about 500 events (every dbt model and test is
one), which cost ~3 s that way. Here each database file keeps one connection while the process lives (at most
``OPEN_FILES`` of them), with ``synchronous=NORMAL``: still safe against a process that dies, while a power cut may
lose the last events of a run. The files, their tables and their place are Dagster's: the UI, the daemon and an
instance without this class read them as before. deploy/dagster.yaml names the class (`instance_class`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

OPEN_FILES = 4  # the index, the runs being written and read; older ones are closed
BUSY_TIMEOUT_SECONDS = 15  # as Dagster's own


class PersistentSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage on one open connection per database file (run shard or index)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._schema_seen: set[tuple[str, str]] = set()
        super().__init__(base_dir, inst_data)

    # Dagster asks, before storing nearly every asset and check event, whether a table or column of a newer schema
    # is there: a new connection and a reflection each time (~500 times, ~1 s a refresh). A table or column that is
    # there stays there (migrations only add), so a yes is remembered; a no is asked again.
    def has_table(self, table_name: str) -> bool:
        if ("table", table_name) in self._schema_seen:
            return True
        found = super().has_table(table_name)
        if found:
            self._schema_seen.add(("table", table_name))
        return found

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        if ("asset_keys column", column_name) in self._schema_seen:
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._schema_seen.add(("asset_keys column", column_name))
        return found

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _normal_sync)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            self._engines[shard] = engine
            while len(self._engines) > OPEN_FILES:
                self._engines.popitem(last=False)[1].dispose()
        self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # one thread at a time on the shared connections, as Dagster's class does
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def wipe(self) -> None:
        self._close_all()
        self._schema_seen.clear()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _normal_sync(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class CareOutcomesSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, event log, schedules in their usual folders), its event log kept open."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = PersistentSqliteEventLogStorage(os.path.join(base_dir, "history", "runs"))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping) -> CareOutcomesSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


class CareOutcomesInstance(DagsterInstance):
    """Dagster's instance on CareOutcomesSqliteStorage where dagster.yaml configures no other storage."""

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        defaults = dict(InstanceRef.config_defaults(base_dir))
        defaults["storage"] = ConfigurableClassData(
            __name__, CareOutcomesSqliteStorage.__name__, yaml.dump({"base_dir": base_dir}, default_flow_style=False)
        )
        return defaults
