"""A process that validates the suites of a run, so Great Expectations is imported beside the run, not in its way.

Importing Great Expectations takes 2-3 s, once per process. `Validator.start()` starts `python -m data_quality.worker`,
which imports it at once, on the machine's other core, while the run imports Dagster and loads the inbox; each check
then reads its datasets itself (read-only, in the run's process) and sends them here to be validated. Requests and
answers are pickles over the worker's stdin and stdout: only the run that started it talks to it. Should the worker
be gone, a check validates in its own process instead: slower, with the same result.

The mart suites come as one request once dbt has built the marts, when the run itself only waits for them: the
worker then validates every other suite of the request in a helper, a fork of itself made once Great Expectations is
imported (so it costs no second import), and both cores validate.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from data_quality.runner import Outcome, Suite, validate

_HEADER = struct.Struct("!Q")
_prestarted: Validator | None = None


class ValidationError(Exception):
    """A suite could not be validated (Great Expectations raised); the message says why."""


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the validator process ended")
    return pickle.loads(stream.read(_HEADER.unpack(header)[0]))  # noqa: S301 - our own child process


def _here(suite: Suite, frames: dict[str, Any]) -> Outcome | ValidationError:
    try:
        return validate(suite, frames)
    except Exception as exc:  # noqa: BLE001 - the check reports it
        return ValidationError(f"{type(exc).__name__}: {exc}")


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
        outcome = self.validate_many([(suite, frames)])[0]
        if isinstance(outcome, ValidationError):
            raise outcome
        return outcome

    def validate_many(self, requests: Sequence[tuple[Suite, dict[str, Any]]]) -> list[Outcome | ValidationError]:
        """The outcome of each suite on its frames, in order; a suite that could not be validated gives the error."""
        answers: list = [("unknown", None)] * len(requests)
        with self._lock:
            if self.in_worker and requests:
                try:
                    _send(self._process.stdin, [(suite.name, frames) for suite, frames in requests])
                    answers = _receive(self._process.stdout)
                except (OSError, EOFError, pickle.PickleError):
                    self.close()
        return [
            value if kind == "outcome" else ValidationError(value) if kind == "error" else _here(suite, frames)
            for (suite, frames), (kind, value) in zip(requests, answers, strict=True)
        ]

    def close(self) -> None:
        """Stop the worker: it holds nothing to keep (it may still be importing, on a night with nothing new). Its
        helper ends when it finds its requests closed."""
        process, self._process = self._process, None
        stop(process)


def stop(process: subprocess.Popen | None) -> None:
    """End a worker process at once and close its pipes (a worker holds nothing that needs an orderly end)."""
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


def _answer(suites: dict[str, Suite], name: str, frames: dict[str, Any]) -> tuple[str, Any]:
    if name not in suites:  # a suite made at run time: validated where it was made
        return ("unknown", name)
    outcome = _here(suites[name], frames)
    return ("error", str(outcome)) if isinstance(outcome, ValidationError) else ("outcome", outcome)


class _Helper:
    """A fork of the worker, Great Expectations already imported, that validates what the worker hands it."""

    def __init__(self, suites: dict[str, Suite], keep_closed: Sequence[int]):
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the helper: it talks to the worker only, never to the run
            code = 0
            try:
                for fd in (request_write, answer_read, *keep_closed):
                    os.close(fd)
                _serve(os.fdopen(request_read, "rb"), os.fdopen(answer_write, "wb"), suites, None)
            except BaseException:  # noqa: BLE001 - a helper never returns into the worker's code
                code = 1
            finally:
                os._exit(code)
        os.close(request_read)
        os.close(answer_write)
        self.requests = os.fdopen(request_write, "wb")
        self.answers = os.fdopen(answer_read, "rb")

    def close(self) -> None:
        for stream in (self.requests, self.answers):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)


def _serve(requests: IO[bytes], answers: IO[bytes], suites: dict[str, Suite], helper: _Helper | None) -> None:
    while True:
        try:
            batch = _receive(requests)
        except EOFError:
            return
        theirs = batch[1::2] if helper is not None and len(batch) > 1 else []
        if theirs:
            try:
                _send(helper.requests, theirs)
            except OSError:  # the helper is gone: the worker validates alone
                helper.close()
                helper, theirs = None, []
        mine = batch[0::2] if theirs else batch
        done = [_answer(suites, name, frames) for name, frames in mine]
        if theirs:
            try:
                helped = _receive(helper.answers)
            except (OSError, EOFError):
                helper.close()
                helper, helped = None, [_answer(suites, name, frames) for name, frames in theirs]
            done = [answer for pair in zip(done, [*helped, None]) for answer in pair if answer is not None]
        _send(answers, done)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    import great_expectations  # noqa: F401 - the reason this process exists: imported before the first request

    from data_quality.suites import ALL_SUITES

    suites = {suite.name: suite for suite in ALL_SUITES}
    helper = None
    if (os.cpu_count() or 1) > 1:
        try:
            helper = _Helper(suites, keep_closed=(requests.fileno(), answers.fileno()))
        except OSError:  # no second process to be had: the worker validates alone
            helper = None
    try:
        _serve(requests, answers, suites, helper)
    finally:
        if helper is not None:
            helper.close()


if __name__ == "__main__":
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)
