"""Suites of the fidelity marts."""

from data_quality.runner import Dataset, Suite
from data_quality.suites.common import unique

fidelity_totals = Suite(
    name="fidelity_totals",
    asset=("marts", "fidelity_totals"),
    description="Totals = sum of the item scores and within the maximum; one row per assessment.",
    datasets=[
        Dataset(
            name="rows",
            sql="""
                select t.*, i.sum_a, i.sum_o
                from marts.fidelity_totals t
                join (select program_id, assessment_date, sum(score_ips_a) as sum_a, sum(score_ips_o) as sum_o
                      from marts.fidelity_items group by program_id, assessment_date) i
                    using (program_id, assessment_date)
            """,
            key=["program_id", "assessment_date"],
            expectations=lambda gxe: [
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="total_ips_a", column_B="sum_a", ignore_row_if="both_values_are_missing"
                ),
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="total_ips_o", column_B="sum_o", ignore_row_if="both_values_are_missing"
                ),
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="max_ips_a", column_B="total_ips_a", or_equal=True, ignore_row_if="either_value_is_missing"
                ),
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="max_ips_o", column_B="total_ips_o", or_equal=True, ignore_row_if="either_value_is_missing"
                ),
                gxe.ExpectColumnValuesToBeInSet(
                    column="band_ips_a", value_set=["exemplary", "good", "fair", "not IPS"]
                ),
                gxe.ExpectColumnValuesToBeInSet(
                    column="band_ips_o", value_set=["exemplary", "good", "fair", "not IPS"]
                ),
                *unique(gxe, "program_id", "assessment_date"),
            ],
        )
    ],
)

fidelity_items = Suite(
    name="fidelity_items",
    asset=("marts", "fidelity_items"),
    description="Item scores and national means in 1..5; one row per assessment and item.",
    datasets=[
        Dataset(
            name="rows",
            sql="select * from marts.fidelity_items",
            key=["program_id", "assessment_date", "item_code"],
            expectations=lambda gxe: [
                *[
                    gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=5)
                    for c in ("score_ips_a", "score_ips_o", "national_mean_ips_a", "national_mean_ips_o")
                ],
                *unique(gxe, "program_id", "assessment_date", "item_code"),
            ],
        )
    ],
)

SUITES = [fidelity_totals, fidelity_items]
