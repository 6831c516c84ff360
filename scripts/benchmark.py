"""`make benchmark`: the performance figures of issue 15, each beside its reference measured in the same run.

    .venv/bin/python scripts/benchmark.py [--rows 2000000] [--keep DIR]

Measures, each in a child process (wall time, peak memory of its process tree): the fixed cost (five rows into a
new warehouse, the whole stack), a night with nothing new, and a full refresh of a generated Dutch care-system
export (the zorgdossier CSV variant: semicolons, cp1252 header, dd-mm-jjjj dates, Dutch labels) beside bare
DuckDB doing the core work on the same file. Numbers go in the README; no test depends on them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

LABELS = [
    "Betaald werk regulier",
    "Betaald werk met ondersteuning jobcoach",
    "Opleiding",
    "Vrijwilligerswerk",
    "Andere dagbesteding",
    "Terug naar thuissituatie",
    "Opname gesloten setting",
    "Pensioen",
    "Onbekend",
]
HEADER = (
    "Cliëntnummer;Zorgaanbieder;Locatie;Startdatum;Einddatum;Reden uitschrijving;"
    "Trede participatieladder start;Trede participatieladder eind;Uren per week\r\n"
)


def write_export(path: Path, n_rows: int) -> None:
    body = path.with_suffix(".body")
    labels = "[" + ", ".join("'" + label + "'" for label in LABELS) + "]"
    duckdb.execute(f"""
        copy (
            select
                'C' || lpad(cast(i as varchar), 9, '0'),
                'Aanbieder ' || cast(i % 40 as varchar),
                ['Arnhem', 'Doetinchem', 'Nijmegen', 'Ede', 'Zutphen'][1 + i % 5],
                strftime(date '2015-01-01' + cast(i % 2000 as integer), '%d-%m-%Y'),
                strftime(date '2020-06-24' + cast(i % 1200 as integer), '%d-%m-%Y'),
                {labels}[1 + cast(hash(i) % 9 as integer)],
                case when i % 10 = 0 then null else 1 + cast(hash(i * 7) % 4 as integer) end,
                case when i % 10 = 0 then null else 1 + cast(hash(i * 13) % 6 as integer) end,
                cast(8 + i % 25 as varchar) || ',5'
            from range({int(n_rows)}) t(i)
        ) to '{body}' (format csv, delimiter ';', header false)
    """)
    with path.open("wb") as out, body.open("rb") as src:
        out.write(HEADER.encode("cp1252"))
        while chunk := src.read(1 << 24):
            out.write(chunk.replace(b"\n", b"\r\n"))
    body.unlink()


# runs a command and prints its wall time and the peak memory of its process tree (the children it waited for)
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"seconds": time.perf_counter() - started, "code": done.returncode, "stdout": done.stdout,
                  "stderr": done.stderr, "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

# the reference: bare DuckDB doing the core work of a refresh in one process: read the export, hash the client
# ids, aggregate by provider, year and destination with the median trajectory duration, store the result
BARE = """
import sys, duckdb
SQL = '''

    create table outflow as
    select column1 as provider, year(strptime(column4, '%d-%m-%Y')) as year, column5 as destination,
           count(distinct sha256('key' || column0)) as clients,
           median(date_diff('day', strptime(column3, '%d-%m-%Y'), strptime(column4, '%d-%m-%Y'))) as median_days
    from read_csv(?, delim = ';', header = false, skip = 1, encoding = 'latin-1', all_varchar = true)
    group by all
'''
con = duckdb.connect(sys.argv[2])
con.execute(SQL, [sys.argv[1]])
con.execute("checkpoint")
"""


def measure(command: list[str], env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env)
    return __import__("json").loads(done.stdout)


def refresh(root: Path, env: dict) -> dict:
    command = [sys.executable, "-m", "pipelines.cli", "refresh", "--inbox", str(root / "inbox"),
               "--warehouse", str(root / "wh" / "co.duckdb")]  # fmt: skip
    result = measure(command, env)
    if result["code"] != 0:
        print(result["stdout"], result["stderr"], sep="")
        raise SystemExit(f"refresh failed (exit {result['code']})")
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="care-outcomes-bench-"))
    env = {**os.environ, "CARE_OUTCOMES_PSEUDONYM_KEY": "benchmark-key"}
    env.pop("CARE_OUTCOMES_POSTGRES_DSN", None)

    # the fixed cost: five rows into a new warehouse, the whole stack (ingest, dbt build and tests, GX, publish,
    # reports); then the same inbox again, a night with nothing new
    tiny = root / "tiny"
    (tiny / "inbox" / "outflow_zorgdossier").mkdir(parents=True, exist_ok=True)
    write_export(tiny / "inbox" / "outflow_zorgdossier" / "export.csv", 5)
    fixed = refresh(tiny, env)
    quiet = refresh(tiny, env)
    assert "nothing new" in quiet["stdout"], quiet["stdout"]

    big = root / "big"
    export = big / "inbox" / "outflow_zorgdossier" / "export.csv"
    export.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_export(export, args.rows)
    size = export.stat().st_size / 1e6
    print(f"generated {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    bare = measure([sys.executable, "-c", BARE, str(export), str(big / "bare.duckdb")])
    if bare["code"] != 0:
        raise SystemExit(bare["stderr"])
    full = refresh(big, env)
    print(full["stdout"], end="")

    marginal = full["seconds"] - fixed["seconds"]
    rows = [
        ("fixed cost: 5 rows into a new warehouse", f"{fixed['seconds']:.1f} s", "", "at most 8 s",
         fixed["seconds"] <= 8),
        ("a night with nothing new", f"{quiet['seconds']:.1f} s", "", "at most 3 s", quiet["seconds"] <= 3),
        (f"refresh of {args.rows:,} rows ({size:.0f} MB)", f"{full['seconds']:.1f} s, {full['peak_mb']:.0f} MB",
         f"bare DuckDB {bare['seconds']:.1f} s, {bare['peak_mb']:.0f} MB", "", None),
        ("marginal cost (that refresh - the fixed cost)", f"{marginal:.1f} s", f"bare DuckDB {bare['seconds']:.1f} s",
         f"at most 1.5x = {1.5 * bare['seconds']:.1f} s", marginal <= 1.5 * bare["seconds"]),
    ]  # fmt: skip
    print()
    print(f"{'figure':<48} {'measured':<22} {'reference (same run)':<28} {'target':<24} met")
    for name, measured, reference, target, met in rows:
        print(f"{name:<48} {measured:<22} {reference:<28} {target:<24} {'' if met is None else 'yes' if met else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
