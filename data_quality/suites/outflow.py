"""Suites of the outflow marts."""

from data_quality.runner import Dataset, Suite
from data_quality.suites.common import fractions, near_zero, unique, zero

outflow_by_destination = Suite(
    name="outflow_by_destination",
    asset=("marts", "outflow_by_destination"),
    description="Shares in [0, 1]; per provider-year every destination present, shares summing to 1, "
    "counts to total_outflow.",
    datasets=[
        Dataset(
            name="rows",
            sql="select * from marts.outflow_by_destination",
            key=["provider", "year", "destination"],
            expectations=lambda gxe: [
                *fractions(gxe, "outflow_share"),
                *unique(gxe, "provider", "year", "destination"),
                gxe.ExpectColumnValuesToBeBetween(column="outflow_count", min_value=0),
            ],
        ),
        Dataset(
            name="provider_years",
            sql="""
                select d.provider, d.year,
                       sum(d.outflow_share) - 1 as share_sum_error,
                       sum(d.outflow_count) as count_sum,
                       max(s.total_outflow) as total_outflow,
                       count(*) - (select count(*) from reference.destinations) as missing_destinations
                from marts.outflow_by_destination d
                left join marts.outflow_summary s using (provider, year)
                group by d.provider, d.year
            """,
            key=["provider", "year"],
            expectations=lambda gxe: [
                *near_zero(gxe, "share_sum_error"),
                *zero(gxe, "missing_destinations"),
                gxe.ExpectColumnPairValuesToBeEqual(column_A="count_sum", column_B="total_outflow"),
            ],
        ),
    ],
)

outflow_by_location = Suite(
    name="outflow_by_location",
    asset=("marts", "outflow_by_location"),
    description="Shares in [0, 1] summing to 1 per location-year; one row per location and destination group.",
    datasets=[
        Dataset(
            name="rows",
            sql="select * from marts.outflow_by_location",
            key=["provider", "year", "location", "destination_group"],
            expectations=lambda gxe: [
                *fractions(gxe, "outflow_share"),
                *unique(gxe, "provider", "year", "location", "destination_group"),
            ],
        ),
        Dataset(
            name="locations",
            sql="""
                select provider, year, location, sum(outflow_share) - 1 as share_sum_error,
                       sum(outflow_count) - max(location_outflow) as count_sum_error
                from marts.outflow_by_location group by provider, year, location
            """,
            key=["provider", "year", "location"],
            expectations=lambda gxe: [*near_zero(gxe, "share_sum_error", "count_sum_error")],
        ),
    ],
)

SHARES = [
    "regular_share",
    "paid_work_share",
    "supported_work_share",
    "education_share",
    "other_daycare_share",
    "home_share",
    "other_share",
]

outflow_summary = Suite(
    name="outflow_summary",
    asset=("marts", "outflow_summary"),
    description="Shares in [0, 1]; regular_count = paid work + education; group shares sum to 1; "
    "supported work within paid work.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select *,
                       regular_count - (paid_work_count + education_count) as regular_count_error,
                       regular_share + other_daycare_share + home_share + other_share - 1 as group_share_error,
                       regular_share - regular_count / total_outflow as regular_share_error
                from marts.outflow_summary
            """,
            key=["provider", "year"],
            expectations=lambda gxe: [
                *fractions(gxe, *SHARES),
                *near_zero(gxe, "regular_count_error", "group_share_error", "regular_share_error"),
                *unique(gxe, "provider", "year"),
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="paid_work_count", column_B="supported_work_count", or_equal=True
                ),
                gxe.ExpectColumnValuesToBeBetween(column="median_trajectory_days", min_value=0),
            ],
        )
    ],
)

outflow_ladder = Suite(
    name="outflow_ladder",
    asset=("marts", "outflow_ladder"),
    description="Ladder shares in [0, 1] summing to 1 where steps are known.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select *, moved_up_share + stable_share + moved_down_share - 1 as share_sum_error
                from marts.outflow_ladder
            """,
            key=["provider", "year"],
            expectations=lambda gxe: [
                *fractions(gxe, "moved_up_share", "stable_share", "moved_down_share"),
                *near_zero(gxe, "share_sum_error"),
                *unique(gxe, "provider", "year"),
            ],
        )
    ],
)

outflow_ladder_transitions = Suite(
    name="outflow_ladder_transitions",
    asset=("marts", "outflow_ladder_transitions"),
    description="Every step pair 1..6 per provider-year; counts add up to outflow_ladder.n_with_steps, shares to 1, "
    "and moving up, staying and moving down agree with outflow_ladder.",
    datasets=[
        Dataset(
            name="provider_years",
            sql="""
                select t.provider, t.year,
                       count(*) - 36 as missing_pairs,
                       sum(t.n) - max(l.n_with_steps) as count_error,
                       sum(t.share) - 1 as share_sum_error,
                       sum(t.share) filter (where t.step_end > t.step_start) - max(l.moved_up_share) as moved_up_error,
                       sum(t.share) filter (where t.step_end < t.step_start) - max(l.moved_down_share)
                           as moved_down_error
                from marts.outflow_ladder_transitions t
                join marts.outflow_ladder l using (provider, year)
                group by t.provider, t.year
            """,
            key=["provider", "year"],
            expectations=lambda gxe: [
                *zero(gxe, "missing_pairs"),
                *near_zero(gxe, "count_error", "share_sum_error", "moved_up_error", "moved_down_error"),
            ],
        ),
        Dataset(
            name="rows",
            sql="select * from marts.outflow_ladder_transitions",
            key=["provider", "year", "step_start", "step_end"],
            expectations=lambda gxe: [
                *fractions(gxe, "share"),
                *unique(gxe, "provider", "year", "step_start", "step_end"),
                gxe.ExpectColumnValuesToBeBetween(column="step_start", min_value=1, max_value=6),
                gxe.ExpectColumnValuesToBeBetween(column="step_end", min_value=1, max_value=6),
            ],
        ),
    ],
)

SUITES = [outflow_by_destination, outflow_by_location, outflow_summary, outflow_ladder, outflow_ladder_transitions]
