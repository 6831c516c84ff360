{#- Every figure goes through the disclosure rule (macros/disclosure.sql) with the number of
    programmes whose value it is made of: NULL where a programme could work out another's figure. -#}
{%- set quartiles = [('p25', 0.25), ('median', 0.5), ('p75', 0.75)] -%}

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
        -- true where too few programmes reported for any national figure (every figure below is then NULL)
        not ({{ disclosed('count(*)') }}) as national_suppressed,
        {%- for metric in ips_quarterly_metrics() %}
        {%- if metric == 'clients_per_fte' %}
        -- as published: mean caseload / mean FTE, not the mean of the programmes' ratios
        {{ disclose(safe_divide(mean('caseload'), mean('fte')), 'count(fte)') }} as clients_per_fte,
        {%- else %}
        {{ disclose(mean(metric), 'count(' ~ metric ~ ')') }} as {{ metric }},
        {%- endif %}
        {%- endfor %}
        -- national totals of the counts (the means are above)
        {%- for count in ips_quarterly_counts() %}
        {{ disclose('cast(sum(' ~ count ~ ') as bigint)', 'count(' ~ count ~ ')') }} as {{ count }}_sum,
        {%- endfor %}
        -- continuous quartiles of the programmes' rates, because the national spread is wide
        {%- for metric in ['paid_work_rate', 'successful_outflow_rate'] %}
        {%- set outer_loop = loop %}
        {%- for suffix, fraction in quartiles %}
        {{ disclose('percentile_cont(' ~ fraction ~ ') within group (order by ' ~ metric ~ ')', 'count(' ~ metric ~ ')', 'quartile') }} as {{ metric }}_{{ suffix }}{{ "," if not (outer_loop.last and loop.last) }}
        {%- endfor %}
        {%- endfor %}
    from quarterly
    group by year, quarter
)

select * from final
