"""Expectation builders shared by the suites."""

import re
from pathlib import Path

TOLERANCE = 1e-9
# the dbt seeds (destination and fidelity item catalogues): suites read the same lists the marts are built from
SEEDS_DIR = Path(__file__).resolve().parents[2] / "dbt" / "seeds"


def dbt_macro_list(file: str, macro: str) -> list[str]:
    """The list a dbt macro returns (e.g. the IPS metrics), read from dbt/macros/<file>.sql: one list for both."""
    text = (SEEDS_DIR.parent / "macros" / f"{file}.sql").read_text(encoding="utf-8")
    body = re.search(rf"macro {macro}\(\).*?return\(\[(.*?)\]\)", text, re.S)
    return re.findall(r"'([a-z_]+)'", body.group(1))


def seed(name: str) -> str:
    """SQL for a dbt seed's rows, read from its CSV (a raw check can run before dbt has loaded the seeds)."""
    return "read_csv('" + str(SEEDS_DIR / f"{name}.csv").replace("'", "''") + "', header = true)"


def fractions(gxe, *columns: str) -> list:
    """Rates and shares are fractions in [0, 1] (NULLs allowed: no denominator)."""
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in columns]


def unique(gxe, *columns: str) -> list:
    """One row per key."""
    if len(columns) == 1:
        return [
            gxe.ExpectColumnValuesToBeUnique(column=columns[0]),
            gxe.ExpectColumnValuesToNotBeNull(column=columns[0]),
        ]
    return [gxe.ExpectCompoundColumnsToBeUnique(column_list=list(columns))]


def near_zero(gxe, *columns: str) -> list:
    """A recomputed difference is zero up to float rounding."""
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=-TOLERANCE, max_value=TOLERANCE) for c in columns]


def zero(gxe, *columns: str) -> list:
    """A count of violations is 0."""
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0) for c in columns]
