"""A process that validates the suites of a run, so Great Expectations is imported beside the run, not in its way.

Importing Great Expectations takes 2-3 s, once per process. `Validator.start()` starts `python -m data_quality.worker`,
which imports it at once, on the machine's other core, while the run imports Dagster and loads the inbox; each check
then reads its datasets itself (read-only, in the run's process) and sends them here to be validated. Requests and
answers are pickles over the worker's stdin and stdout: only the run that started it talks to it. Should the worker
be gone, a check validates in its own process instead: slower, with the same result.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from data_quality.runner import Outcome, Suite, validate

_HEADER = struct.Struct("!Q")
_prestarted: Validator | None = None


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the validator process ended")
    return pickle.loads(stream.read(_HEADER.unpack(header)[0]))  # noqa: S301 - our own child process


class Validator:
    """Validates suites in a worker process where one runs, else in this process."""

    def __init__(self, process: subprocess.Popen | None = None):
        self._process = process
        self._lock = threading.Lock()  # one request at a time on the pipes

    @classmethod
    def start(cls) -> Validator:
        process = subprocess.Popen(
            [sys.executable, "-m", "data_quality.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a worker that fails is replaced by validation in the run's process
        )
        return cls(process)

    @property
    def in_worker(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def validate(self, suite: Suite, frames: dict[str, Any]) -> Outcome:
        with self._lock:
            if self.in_worker:
                try:
                    _send(self._process.stdin, (suite.name, frames))
                    kind, value = _receive(self._process.stdout)
                except (OSError, EOFError, pickle.PickleError):
                    self.close()
                else:
                    if kind == "error":
                        raise RuntimeError(value)
                    if kind == "outcome":
                        return value
        return validate(suite, frames)

    def close(self) -> None:
        """Stop the worker: it holds nothing to keep (it may still be importing, on a night with nothing new)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()


def prestart() -> None:
    """Start the worker now (the command line does, before it imports Dagster), for the next run to take."""
    global _prestarted
    if _prestarted is None:
        _prestarted = Validator.start()


def _take_prestarted() -> Validator | None:
    global _prestarted
    validator, _prestarted = _prestarted, None
    return validator


def discard_prestarted() -> None:
    """Stop the prestarted worker where no run took it."""
    if (validator := _take_prestarted()) is not None:
        validator.close()


def take() -> Validator:
    """The prestarted worker, else a new one."""
    return _take_prestarted() or Validator.start()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    import great_expectations  # noqa: F401 - the reason this process exists: imported before the first request

    from data_quality.suites import ALL_SUITES

    suites = {suite.name: suite for suite in ALL_SUITES}
    while True:
        try:
            name, frames = _receive(requests)
        except EOFError:
            return
        if name not in suites:  # a suite made at run time: validated where it was made
            _send(answers, ("unknown", name))
            continue
        try:
            answer = ("outcome", validate(suites[name], frames))
        except Exception as exc:  # noqa: BLE001 - sent back to the check, which reports it
            answer = ("error", f"{type(exc).__name__}: {exc}")
        _send(answers, answer)


if __name__ == "__main__":
    import os

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)
