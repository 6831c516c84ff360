"""Suites of the IPS quarterly marts."""

from data_quality.runner import Dataset, Suite
from data_quality.suites.common import dbt_macro_list, fractions, near_zero, unique, zero
from pipelines.transform.project import dbt_var

RATES = [
    "paid_work_rate",
    "paid_work_uwv_rate",
    "education_rate",
    "uwv_norm_rate",
    "successful_outflow_rate",
    "unsuccessful_outflow_rate",
]
KEY = ["program_id", "year", "quarter"]
# the metrics of marts.ips_quarterly that ips_benchmark_long lists one per row
METRICS = dbt_macro_list("ips_metrics", "ips_quarterly_metrics")
# the disclosure rule (dbt/macros/disclosure.sql), checked here against the programmes counted anew: a national mean
# needs min_programs_national programmes besides the one reading it, quartiles also min_programs_quartiles
MIN_TOTAL = int(dbt_var("min_programs_national")) + 1
MIN_QUARTILES = max(MIN_TOTAL, int(dbt_var("min_programs_quartiles")))

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

ips_benchmark_long = Suite(
    name="ips_benchmark_long",
    asset=("marts", "ips_benchmark_long"),
    description="Each value is the programme's figure; ranks within 1..n_programs; quartiles ordered; the disclosure "
    "rule: the national mean left out exactly where n_programs - 1 < min_programs_national, the quartiles wherever "
    "n_programs < min_programs_quartiles too, n_programs counted anew from ips_quarterly.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                with values_anew as (
                    unpivot (select program_id, year, quarter, * exclude (program_id, year, quarter)
                             from (select program_id, year, quarter, """
            + ", ".join(f"cast({m} as double) as {m}" for m in METRICS)
            + f""" from marts.ips_quarterly))
                    on columns(* exclude (program_id, year, quarter)) into name metric value value
                ),
                counted as (  -- unpivot leaves NULL values out: the programmes with a value
                    select year, quarter, metric, count(*) as programmes from values_anew group by all
                )
                select l.program_id, l.year, l.quarter, l.metric, l.rank, l.n_programs, l.national_suppressed,
                       l.national_p25, l.national_median, l.national_p75, l.metric_label,
                       l.n_programs < {MIN_TOTAL} as too_few,
                       (l.national_value is not null and l.national_suppressed)
                           or (l.national_median is not null and l.n_programs < {MIN_QUARTILES}) as disclosed_too_much,
                       l.n_programs = coalesce(c.programmes, 0) as n_programs_matches,
                       l.value is not distinct from b.value as value_matches
                from marts.ips_benchmark_long l
                left join values_anew b using (program_id, year, quarter, metric)
                left join counted c using (year, quarter, metric)
            """,
            key=["program_id", "year", "quarter", "metric"],
            expectations=lambda gxe: [
                *unique(gxe, "program_id", "year", "quarter", "metric"),
                gxe.ExpectColumnValuesToBeInSet(column="value_matches", value_set=[True]),
                gxe.ExpectColumnValuesToNotBeNull(column="metric_label"),
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="n_programs", column_B="rank", or_equal=True, ignore_row_if="either_value_is_missing"
                ),
                gxe.ExpectColumnValuesToBeBetween(column="rank", min_value=1),
                gxe.ExpectColumnPairValuesToBeEqual(column_A="national_suppressed", column_B="too_few"),
                gxe.ExpectColumnValuesToBeInSet(column="disclosed_too_much", value_set=[False]),
                gxe.ExpectColumnValuesToBeInSet(column="n_programs_matches", value_set=[True]),
                *[
                    gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                        column_A=hi, column_B=lo, or_equal=True, ignore_row_if="either_value_is_missing"
                    )
                    for lo, hi in (("national_p25", "national_median"), ("national_median", "national_p75"))
                ],
            ],
        )
    ],
)

ips_submissions = Suite(
    name="ips_submissions",
    asset=("marts", "ips_submissions"),
    description="One row per programme-quarter; missing exactly where no version arrived, resubmitted where "
    "more than one did; every received quarter of ips_quarterly present.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select s.program_id, s.year, s.quarter, s.status,
                       (s.status = 'missing') = (s.versions = 0) and (s.status = 'resubmitted') = (s.versions > 1)
                           as status_matches_versions,
                       (s.status <> 'missing') = (q.program_id is not null) as status_matches_marts
                from marts.ips_submissions s
                left join marts.ips_quarterly q using (program_id, year, quarter)
            """,
            key=KEY,
            expectations=lambda gxe: [
                *unique(gxe, *KEY),
                gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["received", "resubmitted", "missing"]),
                gxe.ExpectColumnValuesToBeInSet(column="status_matches_versions", value_set=[True]),
                gxe.ExpectColumnValuesToBeInSet(column="status_matches_marts", value_set=[True]),
            ],
        ),
        Dataset(
            name="quarters_in_marts",
            sql="""
                select count(*) as quarters_not_listed
                from marts.ips_quarterly q
                anti join marts.ips_submissions s using (program_id, year, quarter)
            """,
            key=[],
            expectations=lambda gxe: zero(gxe, "quarters_not_listed"),
        ),
    ],
)

ips_submissions_latest = Suite(
    name="ips_submissions_latest",
    asset=("marts", "ips_submissions"),
    description="Warns about every programme that has not sent the latest quarter any programme reported.",
    blocking=False,
    datasets=[
        Dataset(
            name="latest_quarter",
            sql="""
                select program_id, period_code, status from marts.ips_submissions
                where year * 4 + quarter = (select max(year * 4 + quarter) from marts.ips_submissions)
            """,
            key=["program_id", "period_code"],
            expectations=lambda gxe: [
                gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["received", "resubmitted"])
            ],
        )
    ],
)

ips_funnel = Suite(
    name="ips_funnel",
    asset=("marts", "ips_funnel"),
    description="Funnel limits: rate and limits in [0, 1], lower_998 <= lower_95 <= national <= upper_95 <= upper_998, "
    "the signal the limits give, the pooled national rate recomputed from ips_quarterly, the disclosure rule.",
    datasets=[
        Dataset(
            name="rows",
            sql=f"""
                with pooled as (
                    select cast(year as varchar) || '-K' || cast(quarter as varchar) as period_code,
                           sum(paid_work) / sum(caseload) as paid_work_rate, count(*) as programmes
                    from marts.ips_quarterly where caseload > 0 and paid_work is not null group by year, quarter
                    union all
                    select cast(year as varchar), sum(paid_work) / sum(caseload), count(distinct program_id)
                    from marts.ips_quarterly where caseload > 0 and paid_work is not null group by year
                )
                select f.*,
                       not (f.lower_998 <= f.lower_95 and f.lower_95 <= f.national_rate
                            and f.national_rate <= f.upper_95 and f.upper_95 <= f.upper_998) as limits_unordered,
                       f.signal is distinct from case
                           when f.national_rate is null then null
                           when f.rate > f.upper_998 then 'above_998' when f.rate > f.upper_95 then 'above_95'
                           when f.rate < f.lower_998 then 'below_998' when f.rate < f.lower_95 then 'below_95'
                           else 'within' end as signal_inconsistent,
                       case when f.metric = 'paid_work_rate' then f.national_rate - p.paid_work_rate end
                           as national_rate_error,
                       (f.national_rate is not null) <> (f.n_programs >= {MIN_TOTAL}) as disclosure_broken,
                       f.rate - f.numerator / f.denominator as rate_error
                from marts.ips_funnel f
                left join pooled p using (period_code)
            """,
            key=["program_id", "period_code", "metric"],
            expectations=lambda gxe: [
                *fractions(gxe, "rate", "national_rate", "lower_95", "upper_95", "lower_998", "upper_998"),
                *unique(gxe, "program_id", "period_code", "metric"),
                *near_zero(gxe, "national_rate_error", "rate_error"),
                *[
                    gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[False])
                    for c in ("limits_unordered", "signal_inconsistent", "disclosure_broken")
                ],
            ],
        )
    ],
)

SUITES = [
    ips_quarterly,
    ips_quarterly_gaps,
    ips_yearly,
    ips_quarterly_national,
    ips_yearly_national,
    ips_benchmark,
    ips_benchmark_long,
    ips_submissions,
    ips_submissions_latest,
    ips_funnel,
]
