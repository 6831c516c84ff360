"""A process that runs the run's dbt command, so dbt's Python work and Dagster's handling of its events use both cores.

dbt in the run's own process (`in_process.py`) saves starting a dbt process, but its work and the storing of its
events by Dagster (about 450 events, each written to Dagster's SQLite files) then share one interpreter lock: one
core for both. The command line starts this worker as soon as it knows there is something to refresh; it imports dbt
while the run imports Dagster and loads the inbox, then runs dbt's programmatic runner (dbtRunner) for the command it
is sent and prints dbt's events as the JSON lines of a dbt process. It imports neither Dagster nor dagster-dbt.

Requests are one JSON line each on the worker's stdin ({"args": [...]}); the answer is dbt's event lines, then the
line {"care_outcomes_dbt_end": <exit code>, "error": <message or null>}. Where no worker runs, dbt runs in a thread
of the run's process as before.

The worker is started with a first request of its own: `dbt parse` of the project for the run's warehouse (from the
warehouse's parse state, if it has one), kept as that state, while the run loads Dagster and the inbox. The build
then finds the project parsed; a new warehouse's full parse (about 3 s) is off the run's path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from data_quality.worker import stop
from pipelines.warehouse import temp_folder

END = "care_outcomes_dbt_end"
LEVELS = ("info", "warn", "error")  # what dbt prints at its default log level, and dagster-dbt reads
PARTIAL_PARSE = "partial_parse.msgpack"
_prestarted: subprocess.Popen | None = None
_taken = False  # the prestarted worker runs one command, then waits to be stopped
_ahead = 0  # requests sent at the start whose answers nobody reads: read (and dropped) before the command's


def prestart(parse: list[str] | None = None, state: Path | None = None) -> None:
    """Start the dbt worker now (the command line does, before it imports Dagster), for the run's dbt command; with
    ``parse`` (the arguments of `dbt parse` with the build's project, profile and vars), it parses the project at
    once, in a folder of its own, from and into the parse state ``state``."""
    global _prestarted, _taken, _ahead
    if _prestarted is None:
        _prestarted = subprocess.Popen(
            [sys.executable, "-m", "pipelines.transform.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its faults reach the run as dbt's error event and the end line
        )
        _taken, _ahead = False, 0
        if parse is not None and state is not None:
            _request(_prestarted, {"args": parse, "state": str(state), "own_target": True})
            _ahead = 1


def _request(process: subprocess.Popen, request: dict) -> None:
    try:
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
    except OSError:
        pass  # a worker that is gone says so when its output ends


def take() -> subprocess.Popen | None:
    """The prestarted worker for a dbt command, once: it serves the one run it was started for. Its work ahead is
    done first (so the parse state it keeps is there for the command)."""
    global _taken, _ahead
    if _prestarted is None or _taken or _prestarted.poll() is not None:
        return None
    _taken = True
    while _ahead:
        for line in _prestarted.stdout:
            if end_code(line) is not None:
                break
        else:
            return None  # the worker ended
        _ahead -= 1
    return _prestarted


def end_code(line: bytes) -> int | None:
    """The exit code a worker's end line gives, or None for any other line (one of dbt's events)."""
    return json.loads(line)[END] if line.startswith(b'{"' + END.encode()) else None


def send(process: subprocess.Popen, args: list[str]) -> None:
    """Ask the worker for ``dbt <args>``; its answer is read from its stdout."""
    _request(process, {"args": list(args)})


def keep_state(target_path: Path, state: Path) -> None:
    """Keep dbt's parse state of a command for the next (replaced atomically: a killed run leaves the old one)."""
    made = Path(target_path) / PARTIAL_PARSE
    if made.exists():
        state.parent.mkdir(parents=True, exist_ok=True)
        temp = state.with_name(f".{state.name}.{os.getpid()}.tmp")
        shutil.copyfile(made, temp)
        temp.replace(state)


def discard_prestarted() -> None:
    """Stop the worker, after its command or where no run took it (the command line, as the refresh ends): it holds
    nothing to keep, not even the working database, which it closes after each command."""
    global _prestarted
    process, _prestarted = _prestarted, None
    stop(process)


def close_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the process after a command: the steps after dbt open the
    working database themselves (DuckDB allows one process to write a file, and refuses a second configuration)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    environment = DuckDBConnectionManager._ENV
    DuckDBConnectionManager.close_all_connections()
    if environment is not None:
        environment.close()


def error_line(exc: BaseException | str) -> bytes:
    """A dbt error event, as dagster-dbt reads them, for a fault outside dbt's own events."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return json.dumps({"info": {"level": "error", "msg": message, "name": "MainEncounteredError"}, "data": {}}).encode()


def invoke(args: list[str], line) -> tuple[int, BaseException | None]:
    """Run ``dbt <args>`` here, each event given to ``line`` as the JSON a dbt process prints; (exit code, error)."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_json

    def on_event(msg) -> None:
        if msg.info.level in LEVELS:
            line(msg_to_json(msg).encode())

    try:
        result = dbtRunner(callbacks=[on_event]).invoke(args)
        code = 0 if result.success else 2 if result.exception else 1  # as the dbt command exits
        return code, result.exception
    except BaseException as exc:  # noqa: BLE001 - reported as dbt's failure, never lost
        return 2, exc
    finally:
        close_duckdb()


def _with_own_target(request: dict, line) -> tuple[int, BaseException | None]:
    """A request run in a temporary target folder, from and into the parse state ``request["state"]``."""
    state = Path(request["state"])
    with temp_folder("dbt-parse") as target:
        if state.exists():
            shutil.copyfile(state, Path(target) / PARTIAL_PARSE)
        code, error = invoke([*request["args"], "--target-path", target, "--log-path", target], line)
        if code == 0:
            keep_state(Path(target), state)
        return code, error


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    lock = threading.Lock()  # dbt's threads give events at once

    def line(data: bytes) -> None:
        with lock:
            try:
                answers.write(data + b"\n")
                answers.flush()
            except OSError:  # the run is gone: nobody waits for this dbt command
                os._exit(1)

    for raw in requests:
        request = json.loads(raw)
        code, error = _with_own_target(request, line) if request.get("own_target") else invoke(request["args"], line)
        if error is not None:
            line(error_line(error))
        line(json.dumps({END: code, "error": None if error is None else str(error)}).encode())


if __name__ == "__main__":
    import dbt.adapters.duckdb  # noqa: F401 - the reason this process exists: loaded before the command comes
    import dbt.cli.main  # noqa: F401

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever dbt or a library prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)
