"""dbt run by its programmatic runner (dbtRunner) in this process, with dagster-dbt's events and lineage.

`DbtCliResource.cli()` starts `dbt --version` and then dbt itself as two new Python processes, and initialises a dbt
adapter in this one: about 5 s of every refresh before dbt does any work. Here the same command runs in a thread of
the run's process. dbt's events reach dagster-dbt as the JSON lines its subprocess would have printed, so
`DbtCliInvocation` turns them into the same materializations and asset checks, subsets selected in the UI included.
"""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource
from dagster_dbt.asset_utils import extract_runtime_selection_from_args, get_updated_cli_invocation_params_for_context
from packaging import version

PARTIAL_PARSE = "partial_parse.msgpack"
LEVELS = ("info", "warn", "error")  # what dbt prints at its default log level, and dagster-dbt reads


class DbtInThread:
    """What DbtCliInvocation uses of a dbt process (args, stdout lines, wait, returncode), for dbtRunner in a thread."""

    def __init__(self, args: Sequence[str]):
        self.args = ["dbt", *args]  # shown as the command in Dagster's log
        self.returncode: int | None = None
        self.exception: BaseException | None = None
        self.stdout = self
        self.closed = False
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, args=(list(args),), name="dbt", daemon=True)
        self._thread.start()

    def _run(self, args: list[str]) -> None:
        from dbt.cli.main import dbtRunner

        try:
            result = dbtRunner(callbacks=[self._on_event]).invoke(args)
            self.exception = result.exception
            self.returncode = 0 if result.success else 2 if result.exception else 1  # as the dbt command exits
        except BaseException as exc:  # noqa: BLE001 - reported as dbt's failure, never lost in the thread
            self.exception, self.returncode = exc, 2
        finally:
            _close_duckdb()
            if self.exception is not None:
                self._lines.put(_error_line(self.exception))
            self._lines.put(None)

    def _on_event(self, msg) -> None:
        if msg.info.level in LEVELS:
            from dbt_common.events.functions import msg_to_json

            self._lines.put(msg_to_json(msg).encode())

    # the parts of subprocess.Popen that DbtCliInvocation reads
    def __iter__(self) -> Iterator[bytes]:
        while (line := self._lines.get()) is not None:
            yield line
        self.closed = True

    def __enter__(self) -> DbtInThread:
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        return self.returncode

    def send_signal(self, _signal) -> None:
        """An interrupted run: dbt in this process has no signal to receive; its thread ends with the process."""


def _close_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the process after a command: the steps after dbt open the
    working database themselves (read-only, which DuckDB refuses while this process has it open read-write)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    environment = DuckDBConnectionManager._ENV
    DuckDBConnectionManager.close_all_connections()
    if environment is not None:
        environment.close()


def _error_line(exc: BaseException) -> bytes:
    import json

    message = " ".join(str(exc).split()) or type(exc).__name__
    return json.dumps({"info": {"level": "error", "msg": message, "name": "MainEncounteredError"}, "data": {}}).encode()


def run_dbt(
    dbt: DbtCliResource,
    args: Sequence[str],
    context: AssetExecutionContext,
    target_path: Path,
    partial_parse: Path | None = None,
) -> DbtCliInvocation:
    """`dbt <args>` for the dbt assets of ``context`` (only the selected ones), in this process, its artefacts and log
    in ``target_path``. ``partial_parse``: where dbt's parse state of the last run is kept, so an unchanged project
    is not parsed again (dbt reparses everything when the vars differ, and each warehouse passes its own path)."""
    from dbt.version import __version__

    args, selects, excludes = extract_runtime_selection_from_args(list(args))
    params = get_updated_cli_invocation_params_for_context(
        context=context,
        manifest={},
        dagster_dbt_translator=DagsterDbtTranslator(),
        runtime_selects=selects,
        runtime_excludes=excludes,
    )
    project_dir = Path(params.dbt_project.project_dir if params.dbt_project else dbt.project_dir)
    target_path.mkdir(parents=True, exist_ok=True)
    if partial_parse is not None and partial_parse.exists():
        shutil.copyfile(partial_parse, target_path / PARTIAL_PARSE)
    command = [
        *dbt.global_config_flags,
        *args,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(dbt.profiles_dir or project_dir),
        "--target-path", str(target_path),
        "--log-path", str(target_path),
        "--log-level", "none",  # dbt's lines reach Dagster as events, not as text on this process's stdout
        "--no-send-anonymous-usage-stats",
        *(["--profile", dbt.profile] if dbt.profile else []),
        *(["--target", dbt.target] if dbt.target else []),
        *(["--indirect-selection", params.indirect_selection] if params.indirect_selection else []),
        *params.selection_args,
    ]  # fmt: skip
    return DbtCliInvocation(
        process=DbtInThread(command),  # type: ignore[arg-type]
        manifest=params.manifest,
        dagster_dbt_translator=params.dagster_dbt_translator,
        project_dir=project_dir,
        target_path=target_path,
        raise_on_error=False,
        cli_version=version.parse(__version__),
        project=params.dbt_project,
        context=context,
    )


def keep_partial_parse(target_path: Path, partial_parse: Path) -> None:
    """Keep dbt's parse state of this run for the next (replaced atomically: a killed run leaves the old one)."""
    made = target_path / PARTIAL_PARSE
    if made.exists():
        partial_parse.parent.mkdir(parents=True, exist_ok=True)
        temp = partial_parse.with_suffix(".tmp")
        shutil.copyfile(made, temp)
        temp.replace(partial_parse)
