with

yearly as (
    select * from {{ ref('ips_yearly') }}
),

final as (
    select
        year,
        {{ year_start('year') }} as period_start,
        count(*) as n_programs,
        {{ mean("total_caseload") }} as total_caseload,
        {%- for metric in ips_quarterly_metrics() %}
        {{ mean("avg_" ~ metric) }} as avg_{{ metric }}{{ "," if not loop.last }}
        {%- endfor %}
    from yearly
    group by year
)

select * from final
