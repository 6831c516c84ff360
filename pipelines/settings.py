"""Where the inbox, the warehouse and its companions live.

Read at run time, never at import time, so tests and the Dagster UI can point one process at
different folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INBOX = PROJECT_ROOT / "data" / "sample"
DEFAULT_WAREHOUSE = PROJECT_ROOT / "warehouse" / "care_outcomes.duckdb"
SAMPLE_INBOX = DEFAULT_INBOX


@dataclass(frozen=True)
class Paths:
    """Every path one refresh touches, derived from the inbox and the serving file."""

    inbox: Path
    warehouse: Path

    @property
    def work_db(self) -> Path:
        """The working database the refresh builds in; BI tools never open it."""
        return self.warehouse.with_name(self.warehouse.stem + ".work.duckdb")

    @property
    def quarantine_dir(self) -> Path:
        """Where the bytes of every quarantined file are kept."""
        return self.warehouse.parent / "quarantine"

    @property
    def parquet_dir(self) -> Path:
        """Parquet export of every mart, replaced together with the serving file."""
        return self.warehouse.parent / "parquet"

    @property
    def lock_file(self) -> Path:
        return self.warehouse.with_name(self.warehouse.name + ".lock")


def resolve_paths(inbox: str | os.PathLike | None = None, warehouse: str | os.PathLike | None = None) -> Paths:
    """Flags win over environment variables, which win over the bundled defaults."""
    inbox = inbox or os.environ.get("CARE_OUTCOMES_INBOX") or DEFAULT_INBOX
    warehouse = warehouse or os.environ.get("CARE_OUTCOMES_WAREHOUSE") or DEFAULT_WAREHOUSE
    return Paths(inbox=Path(inbox).resolve(), warehouse=Path(warehouse).resolve())
