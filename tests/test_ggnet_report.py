"""Every GGNet figure of Tables 1-4 of the IPS report (seeds/001), from the bundled sample.

The report prints percentages with two decimals; we assert to 0.01 percentage point (0.0001 as a
fraction, half a unit of the last printed digit plus float slack). Where the report is wrong, or
averages already-rounded percentages, the test asserts the correct value and says why.
"""

from __future__ import annotations

import pytest

from tests.conftest import rows

PP = 0.00005 + 1e-9  # half of 0.01 percentage point, as a fraction
QUARTERS = [(2017, 1), (2017, 2), (2017, 3), (2017, 4), (2018, 1), (2018, 2), (2018, 3), (2018, 4)]

# Table 1: caseload, new clients, FTE, clients per FTE, caseload growth (%)
TABLE_1 = [
    (75, None, 6.30, 11.90, None),
    (76, 11, 6.30, 12.06, 1.33),
    (79, 6, 6.40, 12.34, 3.95),
    (83, 16, 6.40, 12.97, 5.06),
    (104, 30, 6.40, 16.25, 25.30),
    (170, 106, 7.80, 21.79, 63.46),
    (176, 28, 7.30, 24.11, 3.53),
    (237, 72, 8.30, 28.55, 34.66),
]
# Table 2: % paid work, % paid work UWV, % education, % UWV norm, paid work growth %, education growth %
TABLE_2 = [
    (44.00, 20.00, 0.00, 45.45, None, None),
    (32.89, 10.53, 0.00, 32.00, -24.24, None),  # 0 -> 0 education: no growth to compute (report: 0.00%)
    (35.44, 12.66, 2.53, 35.71, 12.00, None),  # 0 -> 2 education: growth from 0 is undefined (report: 0.00%)
    (45.78, 45.78, 2.41, 100.00, 35.71, 0.00),
    (31.73, 29.81, 1.92, 93.94, -13.16, 0.00),
    (29.41, 11.76, 1.76, 40.00, 51.52, 50.00),
    (35.80, 28.41, 2.27, 79.37, 26.00, 33.33),
    (32.49, 22.36, 2.53, 68.83, 22.22, 50.00),
]
# Table 3: % successful outflow, % unsuccessful outflow, growth successful %, growth unsuccessful %
TABLE_3 = [
    (1.33, 4.00, None, None),
    (2.63, 10.53, 100.00, 166.67),
    (2.53, 1.27, 0.00, -87.50),
    (9.64, 4.82, 300.00, 300.00),
    (1.92, 6.73, -75.00, 75.00),
    # The report prints 26.92% and 2.88%, contradicting its own counts: successful outflow went
    # 2 -> 30 (+1400.00%) and unsuccessful 7 -> 10 (+42.86%).
    (17.65, 5.88, 1400.00, 42.86),
    (6.82, 5.68, -60.00, 0.00),
    (2.11, 2.53, -58.33, -40.00),
]


def pct(value):
    return None if value is None else value / 100


def assert_close(actual, expected, what, tolerance=PP):
    if expected is None:
        assert actual is None, f"{what}: expected NULL, got {actual}"
    else:
        assert actual is not None and abs(actual - expected) <= tolerance, f"{what}: expected {expected}, got {actual}"


@pytest.fixture()
def ggnet(serving):
    found = rows(serving, "select * from marts.ips_quarterly where program_id = 'GGNET' order by year, quarter")
    assert [(r["year"], r["quarter"]) for r in found] == QUARTERS
    return found


@pytest.mark.parametrize("i", range(8), ids=[f"{y}Q{q}" for y, q in QUARTERS])
def test_table_1_caseload_and_capacity(ggnet, i):
    row, (caseload, new, fte, per_fte, growth) = ggnet[i], TABLE_1[i]
    assert row["program_name"] == "GGNet / Twomorrow"
    assert row["caseload"] == caseload
    assert row["new_clients"] == new
    assert_close(row["fte"], fte, "fte", 1e-9)
    assert_close(row["clients_per_fte"], per_fte, "clients_per_fte", 0.005 + 1e-9)
    assert_close(row["caseload_growth"], pct(growth), "caseload_growth")


@pytest.mark.parametrize("i", range(8), ids=[f"{y}Q{q}" for y, q in QUARTERS])
def test_table_2_work_and_education(ggnet, i):
    row, (paid, uwv, edu, norm, paid_growth, edu_growth) = ggnet[i], TABLE_2[i]
    assert_close(row["paid_work_rate"], pct(paid), "paid_work_rate")
    assert_close(row["paid_work_uwv_rate"], pct(uwv), "paid_work_uwv_rate")
    assert_close(row["education_rate"], pct(edu), "education_rate")
    assert_close(row["uwv_norm_rate"], pct(norm), "uwv_norm_rate")
    assert_close(row["paid_work_growth"], pct(paid_growth), "paid_work_growth")
    assert_close(row["education_growth"], pct(edu_growth), "education_growth")


@pytest.mark.parametrize("i", range(8), ids=[f"{y}Q{q}" for y, q in QUARTERS])
def test_table_3_outflow(ggnet, i):
    row, (succ, unsucc, succ_growth, unsucc_growth) = ggnet[i], TABLE_3[i]
    assert_close(row["successful_outflow_rate"], pct(succ), "successful_outflow_rate")
    assert_close(row["unsuccessful_outflow_rate"], pct(unsucc), "unsuccessful_outflow_rate")
    assert_close(row["successful_outflow_growth"], pct(succ_growth), "successful_outflow_growth")
    assert_close(row["unsuccessful_outflow_growth"], pct(unsucc_growth), "unsuccessful_outflow_growth")


# The "Gemiddeld" rows of Tables 1-3 and Table 4: means over the year's quarters, from unrounded values.
YEARLY = {
    2017: dict(
        avg_caseload=78.25,
        avg_new_clients=11.00,
        avg_fte=6.35,
        avg_clients_per_fte=12.32,
        avg_caseload_growth=pct(3.45),
        avg_paid_work_rate=pct(39.53),
        avg_paid_work_uwv_rate=pct(22.24),
        avg_education_rate=pct(1.24),
        avg_uwv_norm_rate=pct(53.29),
        avg_paid_work_growth=pct(7.82),
        # only 2017 Q4 has an education growth (2 -> 2): 0.00%, as printed
        avg_education_growth=pct(0.00),
        avg_successful_outflow_rate=pct(4.03),
        # Table 4 prints 5.15% (the mean of the unrounded rates, 5.1529%); Table 3's 5.16% averages
        # the rounded quarterly percentages.
        avg_unsuccessful_outflow_rate=pct(5.15),
        avg_successful_outflow_growth=pct(133.33),
        avg_unsuccessful_outflow_growth=pct(126.39),
    ),
    2018: dict(
        avg_caseload=171.75,
        avg_new_clients=59.00,
        avg_fte=7.45,
        avg_clients_per_fte=22.68,
        avg_caseload_growth=pct(31.74),
        avg_paid_work_rate=pct(32.36),
        avg_paid_work_uwv_rate=pct(23.09),
        avg_education_rate=pct(2.12),
        # The report prints 70.54%, the mean of its rounded quarterly figures; the unrounded mean is 70.5339%.
        avg_uwv_norm_rate=pct(70.53),
        # The report prints 21.65%, the mean of its rounded growths; the unrounded mean is 21.6449%.
        avg_paid_work_growth=pct(21.64),
        avg_education_growth=pct(33.33),
        # Table 4 prints 7.12% (unrounded mean 7.1245%); Table 3's 7.13% averages rounded percentages.
        avg_successful_outflow_rate=pct(7.12),
        avg_unsuccessful_outflow_rate=pct(5.21),
        # The report prints -41.60% and 9.47%, built on its wrong Q2 growths (see Table 3): with
        # 1400.00% and 42.86% the means are 301.67% and 19.46%.
        avg_successful_outflow_growth=pct(301.67),
        avg_unsuccessful_outflow_growth=pct(19.46),
    ),
}
TOTAL_CASELOAD = {2017: 108, 2018: 310}  # Table 4: 75 + 11 + 6 + 16 and 104 + 106 + 28 + 72


@pytest.mark.parametrize("year", [2017, 2018])
def test_yearly_averages_and_table_4(serving, year):
    (row,) = rows(serving, "select * from marts.ips_yearly where program_id = 'GGNET' and year = ?", [year])
    assert row["total_caseload"] == TOTAL_CASELOAD[year]
    assert row["quarters_reported"] == 4
    for column, expected in YEARLY[year].items():
        tolerance = (
            0.005 + 1e-9 if column in ("avg_caseload", "avg_new_clients", "avg_fte", "avg_clients_per_fte") else PP
        )
        assert_close(row[column], expected, f"{year} {column}", tolerance)


def test_benchmark_puts_ggnet_beside_the_national_figures(serving):
    (row,) = rows(
        serving, "select * from marts.ips_benchmark where program_id = 'GGNET' and year = 2018 and quarter = 1"
    )
    (national,) = rows(serving, "select * from marts.ips_quarterly_national where year = 2018 and quarter = 1")
    assert row["national_n_programs"] == national["n_programs"] == 6
    assert_close(row["uwv_norm_rate"], 31 / 33, "uwv_norm_rate", 1e-12)
    assert_close(row["national_uwv_norm_rate"], national["uwv_norm_rate"], "national", 1e-12)
    assert_close(row["uwv_norm_rate_diff"], 31 / 33 - national["uwv_norm_rate"], "diff", 1e-12)
