"""Time a full refresh of a large Dutch care-system export (the zorgdossier CSV variant).

    .venv/bin/python scripts/benchmark.py [--rows 2000000] [--keep DIR]

Generates the export with DuckDB (semicolons, cp1252 header, dd-mm-jjjj dates, Dutch labels),
runs `care-outcomes refresh` on it in a child process and prints wall time and peak memory.
Numbers go in the README; no test depends on them.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="care-outcomes-bench-"))
    inbox = root / "inbox" / "outflow_zorgdossier"
    inbox.mkdir(parents=True, exist_ok=True)
    export = inbox / "export.csv"
    started = time.perf_counter()
    write_export(export, args.rows)
    print(
        f"generated {args.rows:,} rows ({export.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s"
    )
    env = {**os.environ, "CARE_OUTCOMES_PSEUDONYM_KEY": "benchmark-key"}
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "refresh",
            "--inbox",
            str(root / "inbox"),
            "--warehouse",
            str(root / "wh" / "co.duckdb"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(done.stdout, done.stderr, sep="")
    print(f"refresh of {args.rows:,} rows: {elapsed:.1f} s wall, peak memory {peak_mb:.0f} MB, exit {done.returncode}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
