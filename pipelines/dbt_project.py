"""The dbt project as Dagster sees it, and the one way to (re)build its manifest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dagster_dbt import DbtProject

from pipelines.resources import dbt_executable
from pipelines.settings import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt"


class DbtParseError(Exception):
    """The dbt project does not parse; the message carries dbt's own error."""


def dbt_project_for(project_dir: Path = DBT_DIR) -> DbtProject:
    """A dbt project (the repository's, or a copy while developing models) with its profiles beside it."""
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir if (Path(project_dir) / "profiles.yml").exists() else DBT_DIR)
    # `dagster dev` re-parses a stale manifest on start so edited models show up. Not DbtProject.prepare_if_dev():
    # it looks for `dbt` on PATH, which `make dev` (.venv/bin/dagster, venv not activated) does not have.
    if os.getenv("DAGSTER_IS_DEV_CLI"):
        ensure_manifest(project)
    return project


def manifest_is_stale(project: DbtProject) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    files = [p for p in Path(project.project_dir).rglob("*") if p.is_file() and not {"target", "logs"} & set(p.parts)]
    return any(p.stat().st_mtime > built for p in files)


def ensure_manifest(project: DbtProject | None = None) -> None:
    """Run `dbt parse` when the manifest is missing or older than any file of the dbt project."""
    project = project or dbt_project_for()
    if not manifest_is_stale(project):
        return
    env = {**os.environ, "CARE_OUTCOMES_WORK_DB": os.environ.get("CARE_OUTCOMES_WORK_DB", ":memory:")}
    done = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(project.project_dir), "--profiles-dir", str(project.profiles_dir), "--quiet"],
        env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        error = next((i for i, line in enumerate(lines) if "Error" in line), max(len(lines) - 3, 0))
        raise DbtParseError("dbt parse failed: " + " ".join(" ".join(lines[error:error + 4]).split()))
