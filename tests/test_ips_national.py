"""The national marts against an independent computation from the sample files themselves.

Plain Python reads every file of data/sample (CSV with csv, XLSX with openpyxl), applies the
resubmission rule and the SPEC formulas, and must agree with what DuckDB + dbt published. The
hand-worked quantile example lives in dbt (unit test ips_quarterly_national_worked_example).
"""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from collections import defaultdict

import openpyxl
import pytest

from tests.conftest import SAMPLE, rows

DUTCH_FORM = {
    "Programma code": "program_id",
    "Programma": "program_name",
    "Jaar": "year",
    "Kwartaal": "quarter",
    "Aantal cliënten": "caseload",
    "Aantal nieuw ingestroomde cliënten": "new_clients",
    "FTE trajectbegeleider": "fte",
    "Aantal cliënten met betaald werk": "paid_work",
    "Aantal cliënten met betaald werk volgens UWV": "paid_work_uwv",
    "Aantal cliënten met opleiding": "education",
    "Succesvol uitgestroomd": "outflow_successful",
    "Onsuccesvol uitgestroomd": "outflow_unsuccessful",
    "Datum ingediend": "submitted_at",
}


def _records():
    """(order received, record) for every submitted row, in the order the pipeline loads files."""
    received = []
    for folder in ("ips_quarterly", "ips_quarterly_formulier"):
        for path in sorted((SAMPLE / folder).iterdir()):
            if path.suffix == ".csv":
                with path.open(encoding="utf-8-sig") as fh:
                    received += list(csv.DictReader(fh))
            else:
                book = openpyxl.load_workbook(path, read_only=True, data_only=True)
                sheet = book["Kwartaalrapportage"] if "Kwartaalrapportage" in book.sheetnames else book.worksheets[0]
                values = list(sheet.iter_rows(values_only=True))
                header = [DUTCH_FORM.get(h, h) for h in values[0]]
                received += [dict(zip(header, v)) for v in values[1:]]
    latest = {}
    for order, record in enumerate(received):
        key = (record["program_id"], int(record["year"]), int(record["quarter"]))
        submitted = record.get("submitted_at") or None
        if isinstance(submitted, str):
            submitted = dt.datetime.strptime(submitted, "%d-%m-%Y" if submitted[2] == "-" else "%Y-%m-%d")
        rank = (submitted is not None, submitted or dt.datetime.min, order)
        if key not in latest or rank > latest[key][0]:
            latest[key] = (rank, record)
    return {key: record for key, (_, record) in latest.items()}


def _num(value):
    return None if value in (None, "") else float(value)


def _div(a, b):
    return None if a is None or not b else a / b


def _growth(cur, prev):
    return None if prev is None or prev == 0 else (cur - prev) / prev


def expected_quarterly():
    latest = _records()
    out = {}
    for (pid, year, quarter), r in latest.items():
        prev_key = (pid, year - 1, 4) if quarter == 1 else (pid, year, quarter - 1)
        p = latest.get(prev_key)
        c = {
            k: _num(r[k])
            for k in (
                "caseload",
                "new_clients",
                "fte",
                "paid_work",
                "paid_work_uwv",
                "education",
                "outflow_successful",
                "outflow_unsuccessful",
            )
        }
        pv = {k: _num(p[k]) for k in c} if p else {}
        out[(pid, year, quarter)] = {
            "caseload": c["caseload"],
            "new_clients": c["new_clients"],
            "fte": c["fte"],
            "clients_per_fte": _div(c["caseload"], c["fte"]),
            "caseload_growth": _growth(c["caseload"], pv.get("caseload")),
            "paid_work": c["paid_work"],
            "paid_work_uwv": c["paid_work_uwv"],
            "education": c["education"],
            "paid_work_rate": _div(c["paid_work"], c["caseload"]),
            "paid_work_uwv_rate": _div(c["paid_work_uwv"], c["caseload"]),
            "education_rate": _div(c["education"], c["caseload"]),
            "uwv_norm_rate": _div(c["paid_work_uwv"], c["paid_work"]),
            "paid_work_growth": _growth(c["paid_work"], pv.get("paid_work")),
            "education_growth": _growth(c["education"], pv.get("education")),
            "outflow_successful": c["outflow_successful"],
            "outflow_unsuccessful": c["outflow_unsuccessful"],
            "successful_outflow_rate": _div(c["outflow_successful"], c["caseload"]),
            "unsuccessful_outflow_rate": _div(c["outflow_unsuccessful"], c["caseload"]),
            "successful_outflow_growth": _growth(c["outflow_successful"], pv.get("outflow_successful")),
            "unsuccessful_outflow_growth": _growth(c["outflow_unsuccessful"], pv.get("outflow_unsuccessful")),
        }
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _close(actual, expected, what):
    if expected is None:
        assert actual is None, what
    else:
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), what


def test_resubmission_wins_in_the_sample(serving):
    """Parnassia corrected 2018 Q3 three weeks later: the correction counts, both versions stay in raw."""
    latest = _records()[("PARNASSIA", 2018, 3)]
    (row,) = rows(
        serving,
        "select paid_work from marts.ips_quarterly where program_id = 'PARNASSIA' and year = 2018 and quarter = 3",
    )
    assert row["paid_work"] == int(latest["paid_work"])


def test_quarterly_national_matches_independent_computation(serving):
    quarterly = expected_quarterly()
    by_quarter = defaultdict(list)
    for (_pid, year, quarter), metrics in quarterly.items():
        by_quarter[(year, quarter)].append(metrics)
    published = rows(serving, "select * from marts.ips_quarterly_national order by year, quarter")
    assert [(r["year"], r["quarter"]) for r in published] == sorted(by_quarter)
    for row in published:
        programmes = by_quarter[(row["year"], row["quarter"])]
        assert row["n_programs"] == len(programmes)
        for metric in programmes[0]:
            if metric == "clients_per_fte":
                expected = _mean([p["caseload"] for p in programmes]) / _mean([p["fte"] for p in programmes])
            else:
                expected = _mean([p[metric] for p in programmes])
            _close(row[metric], expected, f"{row['year']}Q{row['quarter']} {metric}")
        for metric in ("paid_work_rate", "successful_outflow_rate"):
            values = sorted(p[metric] for p in programmes if p[metric] is not None)
            p25, median, p75 = statistics.quantiles(values, n=4, method="inclusive")
            _close(row[f"{metric}_p25"], p25, f"{metric}_p25")
            _close(row[f"{metric}_median"], median, f"{metric}_median")
            _close(row[f"{metric}_p75"], p75, f"{metric}_p75")
        for count in ("caseload", "new_clients", "paid_work", "paid_work_uwv", "education", "outflow_successful"):
            values = [p[count] for p in programmes if p[count] is not None]
            _close(row[f"{count}_sum"], sum(values) if values else None, f"{count}_sum")


def test_yearly_national_matches_independent_computation(serving):
    quarterly = expected_quarterly()
    latest = _records()
    per_programme_year = defaultdict(dict)
    for (pid, year, quarter), metrics in sorted(quarterly.items()):
        per_programme_year[(pid, year)][quarter] = metrics
    yearly = {}
    for (pid, year), quarters in per_programme_year.items():
        first = min(quarters)
        later_new = [_num(latest[(pid, year, q)]["new_clients"]) for q in quarters if q > first]
        total = None if None in later_new else quarters[first]["caseload"] + sum(later_new)
        yearly[(pid, year)] = {"total_caseload": total} | {
            f"avg_{m}": _mean([q[m] for q in quarters.values()]) for m in quarters[first]
        }
    published_programmes = rows(serving, "select * from marts.ips_yearly")
    assert len(published_programmes) == len(yearly)
    for row in published_programmes:
        for column, expected in yearly[(row["program_id"], row["year"])].items():
            _close(row[column], expected, f"{row['program_id']} {row['year']} {column}")
    dimence = rows(
        serving, "select quarters_reported from marts.ips_yearly where program_id = 'DIMENCE' and year = 2018"
    )
    assert dimence == [{"quarters_reported": 3}], "the sample's Dimence misses 2018 Q2"
    for row in rows(serving, "select * from marts.ips_yearly_national order by year"):
        of_year = [v for (pid, year), v in yearly.items() if year == row["year"]]
        assert row["n_programs"] == len(of_year) == 6
        for column in of_year[0]:
            _close(row[column], _mean([v[column] for v in of_year]), f"{row['year']} {column}")
