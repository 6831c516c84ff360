"""Whether two serving files hold the same marts (every mart, every row and column but the time a file was loaded;
numbers to 1e-9): `make test-py313` compares the sample published on Python 3.13 with the same sample published on
this machine's Python.

    python scripts/same_marts.py A.duckdb B.duckdb     exit 0: the same; 1: the first difference is printed
"""

from __future__ import annotations

import math
import sys

import duckdb

# when this refresh received a file (its load time): the one value two refreshes of the same files never share
WHEN_LOADED = {("ips_submissions", "received_at")}


def marts(path: str) -> dict[str, list[tuple]]:
    with duckdb.connect(path, read_only=True) as con:
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "select table_name, column_name from information_schema.columns where table_schema = 'marts' "
            "order by table_name, ordinal_position"
        ).fetchall():
            if (table, column) not in WHEN_LOADED:
                columns.setdefault(table, []).append(f'"{column}"')
        return {
            name: sorted(con.execute(f'select {", ".join(cols)} from marts."{name}"').fetchall(), key=repr)
            for name, cols in columns.items()
        }


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def main(first: str, second: str) -> int:
    left, right = marts(first), marts(second)
    if sorted(left) != sorted(right):
        print(f"different marts: {sorted(set(left) ^ set(right))}")
        return 1
    for name in left:
        if len(left[name]) != len(right[name]):
            print(f"{name}: {len(left[name])} rows against {len(right[name])}")
            return 1
        for a, b in zip(left[name], right[name], strict=True):
            if len(a) != len(b) or not all(same(x, y) for x, y in zip(a, b, strict=True)):
                print(f"{name}: {a} against {b}")
                return 1
    print(f"same marts: {len(left)} marts, {sum(len(rows) for rows in left.values())} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
