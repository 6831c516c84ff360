with

programme as (
    select * from {{ ref('ips_quarterly') }}
),

national as (
    select * from {{ ref('ips_quarterly_national') }}
),

final as (
    select
        -- keys
        programme.program_id,
        programme.program_name,
        programme.year,
        programme.quarter,
        programme.period_start,
        programme.period_code,
        programme.period_label,
        national.n_programs as national_n_programs,
        -- per metric: the programme, the national mean, and programme minus national
        {%- for metric in ips_quarterly_metrics() %}
        programme.{{ metric }},
        national.{{ metric }} as national_{{ metric }},
        programme.{{ metric }} - national.{{ metric }} as {{ metric }}_diff{{ "," if not loop.last }}
        {%- endfor %}
    from programme
    inner join national
        on national.year = programme.year
        and national.quarter = programme.quarter
)

select * from final
