with

quarterly as (
    select * from {{ ref('ips_quarterly') }}
),

first_quarter as (
    select program_id, year, min(quarter) as first_quarter
    from quarterly
    group by program_id, year
),

yearly as (
    select
        quarterly.program_id,
        quarterly.year,
        max(quarterly.program_name) as program_name,
        count(*) as quarters_reported,
        -- everyone who had IPS at some moment that year: the caseload at the start plus every intake after it;
        -- unknown (NULL) when a later quarter left new_clients empty
        case when count(case when quarterly.quarter > first_quarter.first_quarter and quarterly.new_clients is null then 1 end) > 0
             then null
             else sum(case when quarterly.quarter = first_quarter.first_quarter then quarterly.caseload
                           else quarterly.new_clients end)
        end as total_caseload_sum,
        {%- for metric in ips_quarterly_metrics() %}
        {{ mean("quarterly." ~ metric) }} as avg_{{ metric }}{{ "," if not loop.last }}
        {%- endfor %}
    from quarterly
    inner join first_quarter
        on first_quarter.program_id = quarterly.program_id
        and first_quarter.year = quarterly.year
    group by quarterly.program_id, quarterly.year
),

final as (
    select
        program_id,
        program_name,
        year,
        {{ year_periods('year') }},
        quarters_reported,
        cast(total_caseload_sum as {{ dbt.type_bigint() }}) as total_caseload,
        {%- for metric in ips_quarterly_metrics() %}
        avg_{{ metric }}{{ "," if not loop.last }}
        {%- endfor %}
    from yearly
)

select * from final
