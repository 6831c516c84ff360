"""Expectation builders shared by the suites."""

TOLERANCE = 1e-9


def fractions(gxe, *columns: str) -> list:
    """Rates and shares are fractions in [0, 1] (NULLs allowed: no denominator)."""
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in columns]


def unique(gxe, *columns: str) -> list:
    """One row per key."""
    if len(columns) == 1:
        return [gxe.ExpectColumnValuesToBeUnique(column=columns[0]), gxe.ExpectColumnValuesToNotBeNull(column=columns[0])]
    return [gxe.ExpectCompoundColumnsToBeUnique(column_list=list(columns))]


def near_zero(gxe, *columns: str) -> list:
    """A recomputed difference is zero up to float rounding."""
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=-TOLERANCE, max_value=TOLERANCE) for c in columns]


def zero(gxe, *columns: str) -> list:
    """A count of violations is 0."""
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=0) for c in columns]
