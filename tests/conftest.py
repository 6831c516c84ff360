"""Shared fixtures: the sample warehouse is built once per test session, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION_START = time.time()
SAMPLE = ROOT / "data" / "sample"
# every mart: one dbt model each in dbt/models/marts
MARTS = sorted(p.stem for p in (ROOT / "dbt" / "models" / "marts").glob("*.sql"))


def clean_env(**settings: str) -> dict[str, str]:
    """The test process's environment without the project's settings or a Dagster home, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARE_OUTCOMES_") and k != "DAGSTER_HOME"}
    env.update(settings)
    return env


def refresh_command(inbox: Path, warehouse: Path, *args: str) -> list[str]:
    """The command line of `care-outcomes refresh --inbox INBOX --warehouse WAREHOUSE [ARGS]`."""
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "refresh",
        "--inbox",
        str(inbox),
        "--warehouse",
        str(warehouse),
        *args,
    ]


def run_refresh(
    inbox: Path, warehouse: Path, env: dict | None = None, timeout: int = 300, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """`care-outcomes refresh [ARGS]` in a child process, as a user runs it. The report PDFs are switched off
    (CARE_OUTCOMES_CHROMIUM=off) unless ``env`` says otherwise: the sample build and tests/test_reports.py make and
    check them; elsewhere they would only cost a browser start per refresh."""
    full_env = clean_env(**{"CARE_OUTCOMES_CHROMIUM": "off", **(env or {})})
    return subprocess.run(
        refresh_command(inbox, warehouse, *args),
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="session", autouse=True)
def _manifest():
    from pipelines.transform.project import ensure_manifest

    ensure_manifest()


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory):
    """The bundled sample refreshed into a fresh warehouse; returns (serving file, completed process)."""
    warehouse = tmp_path_factory.mktemp("sample") / "care_outcomes.duckdb"
    done = run_refresh(SAMPLE, warehouse, env={"CARE_OUTCOMES_CHROMIUM": ""})  # PDFs where Chromium is found
    assert done.returncode == 0, done.stdout + done.stderr
    return warehouse, done


@pytest.fixture(scope="session")
def sample_warehouse(sample_build) -> Path:
    return sample_build[0]


@pytest.fixture()
def serving(sample_warehouse):
    """A read-only connection to the sample serving file, as a BI tool opens it."""
    con = duckdb.connect(str(sample_warehouse), read_only=True)
    yield con
    con.close()


from pipelines.warehouse import rows  # noqa: E402 F401 (the tests' one way to read rows as dicts, as the reports do)


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server of Debian's package, started for the session on a private Unix socket (no TCP) in
    a temporary folder and stopped afterwards; as root it runs as the package's postgres user. Yields
    {"dsn", "host", "port"} for the superuser 'care' (trust authentication on that socket only)."""
    import pwd
    import shutil
    import tempfile

    if os.environ.get("CARE_OUTCOMES_SECONDARY_PYTHON"):
        pytest.skip("PostgreSQL is tested on the main Python only (make test-py313 runs the rest on Python 3.13)")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must test against a real PostgreSQL (.ci/run installs Debian's postgresql)")
        pytest.skip("outside CI without PostgreSQL (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="care-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = 54000 + os.getpid() % 1000
    data = folder / "data"
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "care", "--auth=trust", "-E", "UTF8",
         "--locale=C.UTF-8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    options = f"-c listen_addresses='' -c unix_socket_directories='{folder}' -p {port} -c fsync=off"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        yield {"dsn": f"host={folder} port={port} user=care dbname=postgres", "host": str(folder), "port": port}
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
