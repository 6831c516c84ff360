{#- continuous quartiles of the programmes' rates, because the national spread is wide -#}
{%- set spread = [] -%}
{%- for metric in ['paid_work_rate', 'successful_outflow_rate'] -%}
    {%- for suffix, fraction in [('p25', 0.25), ('median', 0.5), ('p75', 0.75)] -%}
        {%- do spread.append('percentile_cont(' ~ fraction ~ ') within group (order by ' ~ metric ~ ') as ' ~ metric ~ '_' ~ suffix) -%}
    {%- endfor -%}
{%- endfor -%}

with

quarterly as (
    select * from {{ ref('ips_quarterly') }}
),

final as (
    select
        year,
        quarter,
        {{ quarter_periods('year', 'quarter') }},
        count(*) as n_programs,
        {%- for metric in ips_quarterly_metrics() %}
        {%- if metric == 'clients_per_fte' %}
        -- as published: mean caseload / mean FTE, not the mean of the programmes' ratios
        {{ safe_divide(mean('caseload'), mean('fte')) }} as clients_per_fte,
        {%- else %}
        {{ mean(metric) }} as {{ metric }},
        {%- endif %}
        {%- endfor %}
        -- national totals of the counts (the means are above)
        {%- for count in ips_quarterly_counts() %}
        cast(sum({{ count }}) as bigint) as {{ count }}_sum,
        {%- endfor %}
        {{ spread | join(',\n        ') }}
    from quarterly
    group by year, quarter
)

select * from final
