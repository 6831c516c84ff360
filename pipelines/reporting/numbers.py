"""Numbers as a Dutch reader expects them: decimal comma, thousands with a point, percentages as in the published
tables (``44,00%``), counts as whole numbers. One place for every figure a report prints.

The formats are the ``number_format`` codes of the ``metrics`` seed (``0``, ``0.00``, ``0.00%``, ``0%``), so a
metric's format is chosen where its label is.
"""

from __future__ import annotations

import math

EMPTY = ""  # what an empty figure prints as; reports add a footnote saying why


DUTCH = str.maketrans({",": ".", ".": ","})  # Python's '1,234.5' as '1.234,5'


def _missing(value: float | int | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def number(value: float | int | None, decimals: int = 0) -> str:
    """12.3456 -> '12,35' (decimals=2); 1234 -> '1.234'; None/NaN -> ''."""
    if _missing(value):
        return EMPTY
    text = f"{round(float(value), decimals) + 0.0:,.{decimals}f}"
    if text.startswith("-") and not text.strip("-0.,"):
        text = text[1:]  # no '-0,00'
    return text.translate(DUTCH)


def percent(fraction: float | None, decimals: int = 2) -> str:
    """0.44 -> '44,00%' (the IPS tables); decimals=0 -> '44%' (the outflow report)."""
    return EMPTY if _missing(fraction) else number(100 * fraction, decimals) + "%"


def signed(value: float | int | None, decimals: int = 0) -> str:
    """A difference: 5 -> '+5', -22 -> '-22', 0 -> '0' (the sign of the number as printed)."""
    text = number(value, decimals)
    return "+" + text if text and not text.startswith("-") and text.strip("0,") != "" else text


def points(fraction_points: float | None, decimals: int = 0) -> str:
    """A difference of two shares: 0.109 -> '+11 procentpunt'."""
    return EMPTY if _missing(fraction_points) else f"{signed(100 * fraction_points, decimals)} procentpunt"


def count(value: float | int | None) -> str:
    """A count: whole, with a thousands point."""
    return number(value, 0)


def formatted(value: float | int | None, number_format: str) -> str:
    """By a ``number_format`` code of the metrics seed: '0', '0.00', '0.00%', '0%'."""
    is_percent = number_format.endswith("%")
    digits = number_format.rstrip("%")
    decimals = len(digits.partition(".")[2])
    return percent(value, decimals) if is_percent else number(value, decimals)


def suppressed_count(value: int | None, threshold: int) -> str:
    """A small count in a published table: below ``threshold`` (0 included) it shows as '<5'."""
    if value is None:
        return EMPTY
    if value < threshold:
        return f"<{threshold}"
    return count(value)
