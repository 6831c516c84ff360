"""Suites of the raw tables: rules that must hold for every stored row, checked as counts in SQL
(raw tables can hold millions of rows; only the counts reach pandas)."""

from data_quality.runner import Dataset, Suite
from data_quality.suites.common import seed, zero

raw_ips_quarterly = Suite(
    name="raw_ips_quarterly",
    asset=("raw", "ips_quarterly"),
    description="Every stored submission: counts >= 0, within the caseload, paid_work_uwv <= paid_work, quarter 1..4.",
    datasets=[
        Dataset(
            name="violations",
            sql="""
                select
                    count(*) filter (where paid_work_uwv > paid_work) as uwv_over_paid_work,
                    count(*) filter (where paid_work > caseload or education > caseload
                                     or outflow_successful > caseload or outflow_unsuccessful > caseload)
                        as over_caseload,
                    count(*) filter (where least(caseload, paid_work, paid_work_uwv, education, outflow_successful,
                                                 outflow_unsuccessful, coalesce(new_clients, 0)) < 0 or fte < 0)
                        as negative,
                    count(*) filter (where quarter not between 1 and 4) as bad_quarter
                from raw.ips_quarterly
            """,
            key=[],
            expectations=lambda gxe: zero(gxe, "uwv_over_paid_work", "over_caseload", "negative", "bad_quarter"),
        )
    ],
)

raw_outflow = Suite(
    name="raw_outflow",
    asset=("raw", "outflow"),
    description="Every stored deregistration: end not before start, a canonical destination (the destination seed), "
    "a pseudonymised client id.",
    datasets=[
        Dataset(
            name="violations",
            sql=f"""
                select
                    count(*) filter (where end_date < start_date) as end_before_start,
                    count(*) filter (where destination not in (select destination from {seed("destinations")}))
                        as unknown_destination,
                    count(*) filter (where not regexp_full_match(client_id, '[0-9a-f]{{64}}')) as not_pseudonymised
                from raw.outflow
            """,
            key=[],
            expectations=lambda gxe: zero(gxe, "end_before_start", "unknown_destination", "not_pseudonymised"),
        )
    ],
)

raw_ips_fidelity = Suite(
    name="raw_ips_fidelity",
    asset=("raw", "ips_fidelity"),
    description="Every stored item score in 1..5.",
    datasets=[
        Dataset(
            name="violations",
            sql="""
                select count(*) filter (where score_ips_a not between 1 and 5 or score_ips_o not between 1 and 5)
                    as bad_score
                from raw.ips_fidelity
            """,
            key=[],
            expectations=lambda gxe: zero(gxe, "bad_score"),
        )
    ],
)

SUITES = [raw_ips_quarterly, raw_outflow, raw_ips_fidelity]
