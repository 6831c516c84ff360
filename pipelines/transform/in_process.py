"""dbt run by its programmatic runner (dbtRunner), with dagster-dbt's events and lineage.

`DbtCliResource.cli()` starts `dbt --version` and then dbt itself as two new Python processes, and initialises a dbt
adapter in this one: about 5 s of every refresh before dbt does any work. Here the same command runs in a worker
process the command line started at the beginning of the refresh (`worker.py`: dbt imported beside the run's own
start), else in a thread of the run's process. dbt's events reach dagster-dbt as the JSON lines its subprocess would
have printed, so `DbtCliInvocation` turns them into the same materializations and asset checks, subsets selected in
the UI included.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource
from dagster_dbt.asset_utils import extract_runtime_selection_from_args, get_updated_cli_invocation_params_for_context
from packaging import version

from pipelines.transform import worker


class _DbtCommand:
    """What DbtCliInvocation uses of a dbt process (args, stdout lines, wait, returncode, send_signal)."""

    def __init__(self, args: Sequence[str]):
        self.args = ["dbt", *args]  # shown as the command in Dagster's log
        self.returncode: int | None = None
        self.stdout = self
        self.closed = False

    def _lines(self) -> Iterator[bytes]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        yield from self._lines()
        self.closed = True

    def __enter__(self) -> _DbtCommand:
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True

    def wait(self, timeout: float | None = None) -> int | None:
        if not self.closed:  # the end of the output is the end of the command
            for _line in self:
                pass
        return self.returncode

    def send_signal(self, _signal) -> None:
        raise NotImplementedError


class DbtInThread(_DbtCommand):
    """dbt's programmatic runner in a thread of this process."""

    def __init__(self, args: Sequence[str]):
        super().__init__(args)
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, args=(list(args),), name="dbt", daemon=True)
        self._thread.start()

    def _run(self, args: list[str]) -> None:
        code, error = worker.invoke(args, self._queue.put)
        if error is not None:
            self._queue.put(worker.error_line(error))
        self.returncode = code
        self._queue.put(None)

    def _lines(self) -> Iterator[bytes]:
        while (line := self._queue.get()) is not None:
            yield line

    def send_signal(self, _signal) -> None:
        """An interrupted run: dbt in a thread has no signal to receive; it ends with the run's process."""


class DbtInWorker(_DbtCommand):
    """The command run by a worker process (worker.py), its event lines read from the worker's stdout."""

    def __init__(self, process: subprocess.Popen, args: Sequence[str]):
        super().__init__(args)
        self._process = process
        worker.send(process, list(args))

    def send_signal(self, _signal) -> None:
        """An interrupted run: the worker is stopped (it serves this command only; DuckDB keeps the working database
        as it was before the statement that was running), and the output ends."""
        self._process.kill()

    def _lines(self) -> Iterator[bytes]:
        for line in self._process.stdout:
            if (code := worker.end_code(line)) is not None:
                self.returncode = code
                return
            yield line.rstrip(b"\n")
        self.returncode = 2
        yield worker.error_line("the dbt worker process ended before dbt did (killed, or out of memory?)")


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
    process = worker.take()  # the prestarted worker, once it has parsed ahead (None: dbt runs in a thread here)
    if partial_parse is not None and partial_parse.exists():
        shutil.copyfile(partial_parse, target_path / worker.PARTIAL_PARSE)
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
        process=DbtInWorker(process, command) if process else DbtInThread(command),  # type: ignore[arg-type]
        manifest=params.manifest,
        dagster_dbt_translator=params.dagster_dbt_translator,
        project_dir=project_dir,
        target_path=target_path,
        raise_on_error=False,
        cli_version=version.parse(__version__),
        project=params.dbt_project,
        context=context,
    )
