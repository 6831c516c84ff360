with

latest as (
    select * from {{ ref('int_ips_quarterly_latest') }}
),

first_reported as (
    select program_id, min(quarter_index) as first_quarter_index
    from latest
    group by program_id
),

with_previous as (
    -- the immediately preceding calendar quarter of the same programme, if it was reported
    select
        cur.*,
        prev.caseload as prev_caseload,
        prev.paid_work as prev_paid_work,
        prev.education as prev_education,
        prev.outflow_successful as prev_outflow_successful,
        prev.outflow_unsuccessful as prev_outflow_unsuccessful,
        prev.program_id is null and cur.quarter_index > first_reported.first_quarter_index as follows_gap
    from latest as cur
    inner join first_reported
        on first_reported.program_id = cur.program_id
    left join latest as prev
        on prev.program_id = cur.program_id
        and prev.quarter_index = cur.quarter_index - 1
),

final as (
    select
        -- keys
        program_id,
        program_name,
        year,
        quarter,

        -- period
        {{ quarter_periods('year', 'quarter') }},

        -- caseload and capacity
        caseload,
        new_clients,
        fte,
        {{ safe_divide('caseload', 'fte') }} as clients_per_fte,
        {{ growth('caseload', 'prev_caseload') }} as caseload_growth,

        -- work and education: counts, then fractions of the caseload
        paid_work,
        paid_work_uwv,
        education,
        {{ safe_divide('paid_work', 'caseload') }} as paid_work_rate,
        {{ safe_divide('paid_work_uwv', 'caseload') }} as paid_work_uwv_rate,
        {{ safe_divide('education', 'caseload') }} as education_rate,
        {{ safe_divide('paid_work_uwv', 'paid_work') }} as uwv_norm_rate,
        {{ growth('paid_work', 'prev_paid_work') }} as paid_work_growth,
        {{ growth('education', 'prev_education') }} as education_growth,

        -- outflow: counts, fractions of the caseload, growth of the counts
        outflow_successful,
        outflow_unsuccessful,
        {{ safe_divide('outflow_successful', 'caseload') }} as successful_outflow_rate,
        {{ safe_divide('outflow_unsuccessful', 'caseload') }} as unsuccessful_outflow_rate,
        {{ growth('outflow_successful', 'prev_outflow_successful') }} as successful_outflow_growth,
        {{ growth('outflow_unsuccessful', 'prev_outflow_unsuccessful') }} as unsuccessful_outflow_growth,

        -- series
        follows_gap
    from with_previous
)

select * from final
