"""The dbt project as Dagster sees it, the arguments of every dbt command, and the one way to (re)build its manifest."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.warehouse import DEFAULT_MEMORY_LIMIT, PROJECT_ROOT

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

DBT_DIR = PROJECT_ROOT / "dbt"


class DbtParseError(Exception):
    """The dbt project does not parse; the message carries dbt's own error."""


def dbt_executable() -> str:
    """The dbt installed beside this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def dbt_args(command: str, work_db: str | os.PathLike, *options: str, memory: str = DEFAULT_MEMORY_LIMIT) -> list[str]:
    """A dbt command against the working database, which dbt/profiles.yml takes from the var `work_db`, with DuckDB's
    memory limit from the var `memory_limit`."""
    return [command, *options, "--vars", json.dumps({"work_db": str(work_db), "memory_limit": memory})]


def dbt_parse_ahead_args(
    work_db: str | os.PathLike, project_dir: Path = DBT_DIR, memory: str = DEFAULT_MEMORY_LIMIT
) -> list[str]:
    """`dbt parse` as the nightly build will see the project (same project, profile and vars: dbt keeps a parse state
    only for these), for the dbt worker to parse ahead of the build (pipelines/transform/worker.py)."""
    return dbt_args("parse", work_db, *project_options(project_dir), memory=memory)


def project_options(project_dir: Path = DBT_DIR) -> list[str]:
    """The project and its profiles, dbt's own log off (its events are read instead), no usage stats: the options of
    a dbt command run by dbt's programmatic runner."""
    where = ["--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir(project_dir))]
    return [*where, "--log-level", "none", "--no-send-anonymous-usage-stats"]


def dbt_build_args(work_db: str | os.PathLike, memory: str = DEFAULT_MEMORY_LIMIT) -> list[str]:
    """The nightly build: seeds, models and data tests. Unit tests check SQL logic on fixed rows; they run in the
    test suite (tests/test_dbt_unit_tests.py), not every night."""
    return dbt_args("build", work_db, "--exclude-resource-type", "unit_test", memory=memory)


def dbt_command(args: list[str], project_dir: Path = DBT_DIR, target_path: Path | None = None) -> list[str]:
    """The full command line of a dbt invocation outside Dagster (manifest, tests)."""
    project = dbt_project_for(project_dir, prepare=False)
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(project.project_dir),
        "--profiles-dir",
        str(project.profiles_dir),
    ]
    return command + (["--target-path", str(target_path)] if target_path else [])


def profiles_dir(project_dir: Path = DBT_DIR) -> Path:
    """Where the project's profiles.yml is: beside it, else (a copy while developing models) the repository's."""
    return Path(project_dir) if (Path(project_dir) / "profiles.yml").exists() else DBT_DIR


def dbt_project_for(project_dir: Path = DBT_DIR, prepare: bool = True) -> DbtProject:
    """A dbt project (the repository's, or a copy while developing models) with its profiles beside it."""
    from dagster_dbt import DbtProject  # 1.4 s to import: not for a night with nothing new (pipelines.news)

    project = DbtProject(project_dir=project_dir, profiles_dir=profiles_dir(project_dir))
    # `dagster dev` re-parses a stale manifest on start so edited models show up. Not DbtProject.prepare_if_dev():
    # it looks for `dbt` on PATH, which `make dev` (.venv/bin/dagster, venv not activated) does not have.
    if prepare and os.getenv("DAGSTER_IS_DEV_CLI"):
        ensure_manifest(project)
    return project


def project_files(project_dir: Path = DBT_DIR) -> list[Path]:
    """Every file of the dbt project itself: models, macros, seeds, tests, settings (not dbt's output)."""
    return sorted(p for p in Path(project_dir).rglob("*") if p.is_file() and not {"target", "logs"} & set(p.parts))


def manifest_is_stale(project: DbtProject) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(p.stat().st_mtime > built for p in project_files(Path(project.project_dir)))


def ensure_manifest(project: DbtProject | None = None) -> None:
    """Run `dbt parse` when the manifest is missing or older than any file of the dbt project. One process parses
    at a time (a lock file), into a folder of its own; the manifest and the parse state are then moved in whole, so
    a refresh starting meanwhile never reads half a manifest."""
    project = project or dbt_project_for(prepare=False)
    if not manifest_is_stale(project):
        return
    target = Path(project.manifest_path).parent
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".parse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest_is_stale(project):  # another process parsed while this one waited
            return
        with tempfile.TemporaryDirectory(prefix=".parse-", dir=target) as parsed:
            if (target / "partial_parse.msgpack").exists():  # dbt parses only what changed
                shutil.copyfile(target / "partial_parse.msgpack", Path(parsed) / "partial_parse.msgpack")
            done = subprocess.run(
                dbt_command(dbt_args("parse", ":memory:", "--quiet"), Path(project.project_dir), Path(parsed)),
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
                error = next((i for i, line in enumerate(lines) if "Error" in line), max(len(lines) - 3, 0))
                raise DbtParseError("dbt parse failed: " + " ".join(" ".join(lines[error : error + 4]).split()))
            for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last: it marks the parse done
                if (Path(parsed) / name).exists():
                    os.replace(Path(parsed) / name, target / name)


def dbt_var(name: str, project_dir: Path = DBT_DIR):
    """A var of dbt_project.yml (the quality checks test the disclosure rule with the thresholds the marts use)."""
    import yaml

    config = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    return config["vars"][name]
