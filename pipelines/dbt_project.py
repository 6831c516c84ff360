"""The dbt project as Dagster sees it, and the one way to (re)build its manifest."""

from __future__ import annotations

import os
import subprocess

from dagster_dbt import DbtProject

from pipelines.resources import dbt_executable
from pipelines.settings import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt"

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)
# `dagster dev` re-parses on start so edited models show up; everything else uses ensure_manifest().
dbt_project.prepare_if_dev()


class DbtParseError(Exception):
    """The dbt project does not parse; the message carries dbt's own error."""


def manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [p for p in DBT_DIR.rglob("*") if p.is_file() and "target" not in p.parts and "logs" not in p.parts]
    return any(p.stat().st_mtime > built for p in sources)


def ensure_manifest() -> None:
    """Run `dbt parse` when the manifest is missing or older than any file of the dbt project."""
    if not manifest_is_stale():
        return
    env = {**os.environ, "CARE_OUTCOMES_WORK_DB": os.environ.get("CARE_OUTCOMES_WORK_DB", ":memory:")}
    done = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--quiet"],
        env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        error = next((i for i, line in enumerate(lines) if "Error" in line), max(len(lines) - 3, 0))
        raise DbtParseError("dbt parse failed: " + " ".join(" ".join(lines[error:error + 4]).split()))
