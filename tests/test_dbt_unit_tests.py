"""Runs the dbt unit tests (growth edges, yearly total, national worked example) as part of `make test`.

The nightly build excludes unit tests; here they run against a copy of the sample working database.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from pipelines.transform.project import dbt_args, dbt_command

UNIT_TESTS = [
    "ips_quarterly_growth_edges",
    "ips_yearly_total_caseload",
    "ips_quarterly_national_worked_example",
    "ips_quarterly_national_with_three_programmes",
    "ips_yearly_national_means_of_programmes",
    "outflow_by_destination_fills_every_destination",
    "outflow_summary_counts_shares_median_and_previous_year",
    "outflow_ladder_ignores_rows_without_both_steps",
    "fidelity_totals_bands_at_the_edges",
    "fidelity_items_national_mean_uses_latest_assessments",
    "ips_benchmark_long_ranks_spread_and_suppression",
    "ips_submissions_marks_missing_and_resubmitted_quarters",
    "outflow_ladder_transitions_fills_the_matrix",
    "ips_funnel_limits_and_signals_worked_example",
]


def test_dbt_unit_tests_pass(sample_warehouse, tmp_path):
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    copy = tmp_path / work.name  # dbt-duckdb names the catalog after the file: views refer to it
    shutil.copy(work, copy)
    done = subprocess.run(
        dbt_command(dbt_args("test", copy, "--select", "test_type:unit"), target_path=tmp_path / "target"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    for name in UNIT_TESTS:
        assert re.search(rf"PASS \S+::{name}\b", done.stdout), f"unit test {name} did not pass"
    assert f"PASS={len(UNIT_TESTS)} " in done.stdout and "ERROR=0" in done.stdout
