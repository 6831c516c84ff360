"""Property-based tests (hypothesis).

1. Random valid submissions (IPS quarters with gaps, fidelity assessments, outflow exports) always
   give marts that pass every blocking suite.
2. A random valid file broken by one random rule violation is always quarantined, naming that rule.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_quality.runner import run_suite
from data_quality.suites import ALL_SUITES
from pipelines.ingest.load import ingest_contract
from pipelines.ingest.pseudonymise import hmac_sql, install_key
from pipelines.ingest.registry import load_registry
from pipelines.transform.project import dbt_build_args, dbt_command
from tests.conftest import ROOT

CONTRACTS = load_registry().contracts
IPS_COLUMNS = [c.name for c in CONTRACTS["ips_quarterly"].columns if c.name != "submitted_at"]
OUTFLOW_COLUMNS = [c.name for c in CONTRACTS["outflow"].columns]
DESTINATIONS = list(CONTRACTS["outflow"].column("destination").values)  # from the seed dbt/seeds/destinations.csv


@st.composite
def ips_counts(draw):
    caseload = draw(st.integers(0, 400))
    paid = draw(st.integers(0, caseload))
    return {
        "caseload": caseload,
        "new_clients": draw(st.one_of(st.none(), st.integers(0, 200))),
        "fte": draw(st.decimals(0, 20, places=1, allow_nan=False)),
        "paid_work": paid,
        "paid_work_uwv": draw(st.integers(0, paid)),
        "education": draw(st.integers(0, caseload)),
        "outflow_successful": draw(st.integers(0, caseload)),
        "outflow_unsuccessful": draw(st.integers(0, caseload)),
    }


@st.composite
def ips_submission(draw):
    rows = []
    for p in range(draw(st.integers(1, 4))):
        quarters = draw(
            st.lists(
                st.sampled_from([(y, q) for y in (2017, 2018) for q in (1, 2, 3, 4)]),
                min_size=1,
                max_size=8,
                unique=True,
            )
        )
        for year, quarter in sorted(quarters):
            rows.append(
                {
                    "program_id": f"P{p}",
                    "program_name": f"Programma {p}",
                    "year": year,
                    "quarter": quarter,
                    **draw(ips_counts()),
                }
            )
    return rows


@st.composite
def outflow_export(draw):
    rows = []
    for i in range(draw(st.integers(1, 40))):
        end = dt.date(2022, 1, 1) + dt.timedelta(days=draw(st.integers(0, 729)))
        start = end - dt.timedelta(days=draw(st.integers(0, 2000)))
        start_step = draw(st.one_of(st.none(), st.integers(1, 6)))
        rows.append(
            {
                "client_id": f"K{i}",
                "provider": draw(st.sampled_from(["A", "B"])),
                "location": draw(st.sampled_from(["X", "Y", ""])),
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "destination": draw(st.sampled_from(DESTINATIONS)),
                "ladder_step_start": start_step,
                "ladder_step_end": draw(st.one_of(st.none(), st.integers(1, 6))),
            }
        )
    return rows


def catalogue():
    with (ROOT / "dbt" / "seeds" / "fidelity_item_catalogue.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@st.composite
def fidelity_assessments(draw):
    rows = []
    for p in range(draw(st.integers(1, 3))):
        for date in draw(st.lists(st.sampled_from(["2017-05-01", "2018-05-01"]), min_size=1, max_size=2, unique=True)):
            for item in catalogue():
                score = lambda applies: draw(st.one_of(st.none(), st.integers(1, 5))) if applies == "true" else None  # noqa: E731
                rows.append(
                    {
                        "program_id": f"P{p}",
                        "assessment_date": date,
                        "item_code": item["item_code"],
                        "score_ips_a": score(item["applies_ips_a"]),
                        "score_ips_o": score(item["applies_ips_o"]),
                    }
                )
    return rows


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def ingest_inbox(tmp_path, files: dict[str, str]):
    inbox = tmp_path / "inbox"
    for name, text in files.items():
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_text(text, encoding="utf-8")
    registry = load_registry()
    work = tmp_path / "care_outcomes.work.duckdb"
    con = duckdb.connect(str(work))
    install_key(con, b"property-key")
    loads = [
        load
        for c in registry.contracts.values()
        for load in ingest_contract(con, registry, c, inbox, tmp_path / "quarantine", pseudonymise=hmac_sql)
    ]
    con.close()
    return work, loads


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(ips=ips_submission(), outflow=outflow_export(), fidelity=fidelity_assessments())
def test_valid_submissions_give_marts_that_pass_every_suite(tmp_path_factory, ips, outflow, fidelity):
    tmp = tmp_path_factory.mktemp("valid")
    work, loads = ingest_inbox(
        tmp,
        {
            "ips_quarterly/random.csv": to_csv(ips, IPS_COLUMNS),
            "outflow/random.csv": to_csv(outflow, OUTFLOW_COLUMNS),
            "ips_fidelity/random.csv": to_csv(fidelity, list(fidelity[0])),
        },
    )
    assert [load.status for load in loads] == ["loaded"] * 3, [load.error for load in loads]
    done = subprocess.run(dbt_command(dbt_build_args(work), target_path=tmp / "target"), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    con = duckdb.connect(str(work), read_only=True)
    failed = {s.name: o.summary() for s in ALL_SUITES if s.blocking and not (o := run_suite(con, s)).success}
    con.close()
    assert failed == {}


# --- single-rule violations -------------------------------------------------------------------

IPS_VIOLATIONS = {
    "negative count": (lambda r: r.update(education=-1), "must be at least 0"),
    "paid work over caseload": (
        lambda r: r.update(paid_work=r["caseload"] + 1, paid_work_uwv=0),
        "paid work within caseload",
    ),
    "UWV over paid work": (lambda r: r.update(paid_work_uwv=r["paid_work"] + 1), "UWV paid work within paid work"),
    "education over caseload": (lambda r: r.update(education=r["caseload"] + 1), "education within caseload"),
    "quarter 5": (lambda r: r.update(quarter=5), "must be at most 4"),
    "quarter 0": (lambda r: r.update(quarter=0), "must be at least 1"),
    "text in a number": (lambda r: r.update(caseload="veel"), "not a whole number"),
    "fraction in a count": (lambda r: r.update(paid_work=1.5), "not a whole number"),
    "year in the future": (lambda r: r.update(year=dt.date.today().year + 1), "lies in the future"),
    "empty programme": (lambda r: r.update(program_id=""), "empty, but required"),
    "negative fte": (lambda r: r.update(fte=-0.5), "must be at least 0"),
}
OUTFLOW_VIOLATIONS = {
    "end before start": (lambda r: r.update(start_date="2023-12-31", end_date="2023-01-01"), "end not before start"),
    "unknown destination": (lambda r: r.update(destination="maan"), "unknown value"),
    "ladder step 7": (lambda r: r.update(ladder_step_end=7), "must be at most 6"),
    "ladder step 0": (lambda r: r.update(ladder_step_start=0), "must be at least 1"),
    "not a date": (lambda r: r.update(end_date="31-12-2023"), "not a date"),
    "end in the future": (
        lambda r: r.update(end_date=(dt.date.today() + dt.timedelta(days=30)).isoformat()),
        "end date not in the future",
    ),
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(ips=ips_submission(), outflow=outflow_export(), data=st.data())
def test_a_single_rule_violation_is_always_quarantined(tmp_path_factory, ips, outflow, data):
    kind = data.draw(st.sampled_from(["ips", "outflow"]))
    rows, columns, violations, folder = (
        (ips, IPS_COLUMNS, IPS_VIOLATIONS, "ips_quarterly")
        if kind == "ips"
        else (outflow, OUTFLOW_COLUMNS, OUTFLOW_VIOLATIONS, "outflow")
    )
    name = data.draw(st.sampled_from(sorted(violations)))
    victim = data.draw(st.integers(0, len(rows) - 1))
    mutate, reason = violations[name]
    mutate(rows[victim])
    _, loads = ingest_inbox(tmp_path_factory.mktemp("bad"), {f"{folder}/broken.csv": to_csv(rows, columns)})
    (load,) = loads
    assert load.status == "quarantined", f"{name} was loaded"
    assert reason in load.error, f"{name}: {load.error}"
    assert f"line {victim + 2}" in load.error, f"{name}: the reason names line {victim + 2}: {load.error}"
