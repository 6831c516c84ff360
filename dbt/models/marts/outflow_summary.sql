{%- set share_of = {
    'regular_share': 'regular_count',
    'paid_work_share': 'paid_work_count',
    'supported_work_share': 'supported_work_count',
    'education_share': 'education_count',
    'other_daycare_share': 'other_daycare_count',
    'home_share': 'home_count',
    'other_share': 'other_count',
} -%}
with

deregistrations as (
    select * from {{ ref('int_outflow_deregistrations') }}
),

counted as (
    select
        provider,
        year,
        count(*) as total_outflow,
        sum(case when destination in ('betaald_werk_regulier', 'betaald_werk_ondersteund') then 1 else 0 end) as paid_work_count,
        sum(case when destination = 'betaald_werk_ondersteund' then 1 else 0 end) as supported_work_count,
        sum(case when destination = 'opleiding' then 1 else 0 end) as education_count,
        sum(case when destination_group = 'regulier' then 1 else 0 end) as regular_count,
        sum(case when destination_group = 'andere_dagbesteding' then 1 else 0 end) as other_daycare_count,
        sum(case when destination_group = 'thuis' then 1 else 0 end) as home_count,
        sum(case when destination_group = 'overige' then 1 else 0 end) as other_count,
        percentile_cont(0.5) within group (order by trajectory_days) as median_trajectory_days
    from deregistrations
    group by provider, year
),

with_shares as (
    select
        counted.*,
        {%- for share, count in share_of.items() %}
        {{ safe_divide(count, 'total_outflow') }} as {{ share }}{{ "," if not loop.last }}
        {%- endfor %}
    from counted
),

final as (
    select
        -- keys
        cur.provider,
        cur.year,
        {{ year_periods('cur.year') }},

        -- counts
        cast(cur.total_outflow as {{ dbt.type_bigint() }}) as total_outflow,
        cast(cur.paid_work_count as {{ dbt.type_bigint() }}) as paid_work_count,
        cast(cur.supported_work_count as {{ dbt.type_bigint() }}) as supported_work_count,
        cast(cur.education_count as {{ dbt.type_bigint() }}) as education_count,
        cast(cur.regular_count as {{ dbt.type_bigint() }}) as regular_count,

        -- shares of total_outflow
        {%- for share in share_of %}
        cur.{{ share }},
        {%- endfor %}

        -- trajectory
        cast(cur.median_trajectory_days as {{ type_double() }}) as median_trajectory_days,

        -- versus the previous year
        cast(prev.total_outflow as {{ dbt.type_bigint() }}) as prev_total_outflow,
        cur.regular_share - prev.regular_share as regular_share_change
    from with_shares as cur
    left join with_shares as prev
        on prev.provider = cur.provider
        and prev.year = cur.year - 1
)

select * from final
