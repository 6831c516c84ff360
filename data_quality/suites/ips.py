"""Suites of the IPS quarterly marts."""

from data_quality.runner import Dataset, Suite
from data_quality.suites.common import fractions, near_zero, unique

RATES = [
    "paid_work_rate",
    "paid_work_uwv_rate",
    "education_rate",
    "uwv_norm_rate",
    "successful_outflow_rate",
    "unsuccessful_outflow_rate",
]
KEY = ["program_id", "year", "quarter"]

ips_quarterly = Suite(
    name="ips_quarterly",
    asset=("marts", "ips_quarterly"),
    description="Rates in [0, 1], UWV norm <= 1, clients_per_fte = caseload / fte, one row per programme-quarter, "
    "gaps flagged.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select *, clients_per_fte - caseload / nullif(fte, 0) as clients_per_fte_error
                from marts.ips_quarterly
            """,
            key=KEY,
            expectations=lambda gxe: [
                *fractions(gxe, *RATES),
                *near_zero(gxe, "clients_per_fte_error"),
                *unique(gxe, *KEY),
                gxe.ExpectColumnValuesToBeBetween(column="quarter", min_value=1, max_value=4),
                gxe.ExpectColumnValuesToBeBetween(column="caseload", min_value=0),
                gxe.ExpectColumnValuesToBeBetween(column="fte", min_value=0),
            ],
        ),
        Dataset(
            # every quarter that follows a gap in the programme's series carries the flag, and only those
            name="gap_flags",
            sql="""
                select q.program_id, q.year, q.quarter, q.follows_gap,
                       prev.program_id is null and exists (
                           select 1 from marts.ips_quarterly e
                           where e.program_id = q.program_id and e.year * 4 + e.quarter < q.year * 4 + q.quarter
                       ) as has_gap
                from marts.ips_quarterly q
                left join marts.ips_quarterly prev
                    on prev.program_id = q.program_id
                    and prev.year * 4 + prev.quarter = q.year * 4 + q.quarter - 1
            """,
            key=KEY,
            expectations=lambda gxe: [gxe.ExpectColumnPairValuesToBeEqual(column_A="follows_gap", column_B="has_gap")],
        ),
    ],
)

ips_quarterly_gaps = Suite(
    name="ips_quarterly_gaps",
    asset=("marts", "ips_quarterly"),
    description="Warns about every quarter that follows a gap in a programme's series (its growth is NULL).",
    blocking=False,
    datasets=[
        Dataset(
            name="gaps",
            sql="select program_id, year, quarter, follows_gap from marts.ips_quarterly",
            key=KEY,
            expectations=lambda gxe: [gxe.ExpectColumnValuesToBeInSet(column="follows_gap", value_set=[False])],
        )
    ],
)

ips_yearly = Suite(
    name="ips_yearly",
    asset=("marts", "ips_yearly"),
    description="Yearly averages of rates in [0, 1], 1..4 quarters, total caseload at least the first quarter's "
    "caseload.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select y.*, first.caseload as first_caseload
                from marts.ips_yearly y
                join marts.ips_quarterly first
                    on first.program_id = y.program_id and first.year = y.year
                    and first.quarter = (select min(quarter) from marts.ips_quarterly m
                                         where m.program_id = y.program_id and m.year = y.year)
            """,
            key=["program_id", "year"],
            expectations=lambda gxe: [
                *fractions(gxe, *(f"avg_{r}" for r in RATES)),
                *unique(gxe, "program_id", "year"),
                gxe.ExpectColumnValuesToBeBetween(column="quarters_reported", min_value=1, max_value=4),
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="total_caseload",
                    column_B="first_caseload",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                ),
            ],
        )
    ],
)

ips_quarterly_national = Suite(
    name="ips_quarterly_national",
    asset=("marts", "ips_quarterly_national"),
    description="National rates in [0, 1], clients_per_fte = mean caseload / mean fte, quartiles ordered, "
    "one row per quarter.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select n.*,
                       n.clients_per_fte - p.mean_caseload / nullif(p.mean_fte, 0) as clients_per_fte_error,
                       n.n_programs - p.programmes as n_programs_error
                from marts.ips_quarterly_national n
                join (select year, quarter, avg(caseload) as mean_caseload, avg(fte) as mean_fte, count(*) as programmes
                      from marts.ips_quarterly group by year, quarter) p using (year, quarter)
            """,
            key=["year", "quarter"],
            expectations=lambda gxe: [
                *fractions(
                    gxe,
                    *RATES,
                    "paid_work_rate_p25",
                    "paid_work_rate_median",
                    "paid_work_rate_p75",
                    "successful_outflow_rate_p25",
                    "successful_outflow_rate_median",
                    "successful_outflow_rate_p75",
                ),
                *near_zero(gxe, "clients_per_fte_error", "n_programs_error"),
                *unique(gxe, "year", "quarter"),
                *[
                    gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                        column_A=f"{m}_{hi}",
                        column_B=f"{m}_{lo}",
                        or_equal=True,
                        ignore_row_if="either_value_is_missing",
                    )
                    for m in ("paid_work_rate", "successful_outflow_rate")
                    for lo, hi in (("p25", "median"), ("median", "p75"))
                ],
            ],
        )
    ],
)

ips_yearly_national = Suite(
    name="ips_yearly_national",
    asset=("marts", "ips_yearly_national"),
    description="National yearly averages of rates in [0, 1], one row per year.",
    datasets=[
        Dataset(
            name="rows",
            sql="select * from marts.ips_yearly_national",
            key=["year"],
            expectations=lambda gxe: [*fractions(gxe, *(f"avg_{r}" for r in RATES)), *unique(gxe, "year")],
        )
    ],
)

ips_benchmark = Suite(
    name="ips_benchmark",
    asset=("marts", "ips_benchmark"),
    description="Each difference is programme minus national; one row per programme-quarter.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select program_id, year, quarter,
                       paid_work_rate_diff - (paid_work_rate - national_paid_work_rate) as paid_work_rate_diff_error,
                       clients_per_fte_diff - (clients_per_fte - national_clients_per_fte)
                           as clients_per_fte_diff_error,
                       successful_outflow_rate_diff - (successful_outflow_rate - national_successful_outflow_rate)
                           as successful_outflow_rate_diff_error
                from marts.ips_benchmark
            """,
            key=KEY,
            expectations=lambda gxe: [
                *near_zero(
                    gxe, "paid_work_rate_diff_error", "clients_per_fte_diff_error", "successful_outflow_rate_diff_error"
                ),
                *unique(gxe, *KEY),
            ],
        )
    ],
)

SUITES = [ips_quarterly, ips_quarterly_gaps, ips_yearly, ips_quarterly_national, ips_yearly_national, ips_benchmark]
