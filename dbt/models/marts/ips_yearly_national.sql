{#- Every mean goes through the disclosure rule (macros/disclosure.sql) with the number of
    programmes whose yearly value it is made of. -#}
with

yearly as (
    select * from {{ ref('ips_yearly') }}
),

final as (
    select
        year,
        {{ year_periods('year') }},
        count(*) as n_programs,
        -- true where too few programmes reported that year for any national figure
        not ({{ disclosed('count(*)') }}) as national_suppressed,
        {{ disclose(mean("total_caseload"), "count(total_caseload)") }} as total_caseload,
        {%- for metric in ips_quarterly_metrics() %}
        {{ disclose(mean("avg_" ~ metric), "count(avg_" ~ metric ~ ")") }} as avg_{{ metric }}{{ "," if not loop.last }}
        {%- endfor %}
    from yearly
    group by year
)

select * from final
