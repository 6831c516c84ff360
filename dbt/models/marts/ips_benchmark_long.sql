{#- One row per programme, quarter and metric: the shape BI tools chart and filter best. -#}
{%- set metrics = ips_quarterly_metrics() -%}
with

quarterly as (
    select * from {{ ref('ips_quarterly') }}
),

national as (
    select * from {{ ref('ips_quarterly_national') }}
),

catalogue as (
    select * from {{ ref('metrics') }}
),

benchmarks as (
    -- the thresholds that give a band (ips_grow_uk is a reference line, not a band)
    select * from {{ ref('benchmarks') }}
    where benchmark_set in ('ips_employment_center', 'ips_fidelity_item_1')
),

programme_values as (
    {%- for metric in metrics %}
    select program_id, year, quarter, period_start, period_code, period_label, '{{ metric }}' as metric,
           cast({{ metric }} as {{ type_double() }}) as value
    from quarterly
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

national_values as (
    {%- for metric in metrics %}
    select year, quarter, '{{ metric }}' as metric, cast({{ metric }} as {{ type_double() }}) as national_value
    from national
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

spread as (
    -- the programmes with a value for the metric that quarter, and where their values lie
    select
        year,
        quarter,
        metric,
        count(value) as n_programs,
        -- the disclosure rule (macros/disclosure.sql) for the mean, and for the quartiles
        not ({{ disclosed('count(value)') }}) as is_suppressed,
        {{ disclose('percentile_cont(0.25) within group (order by value)', 'count(value)', 'quartile') }} as national_p25,
        {{ disclose('percentile_cont(0.5) within group (order by value)', 'count(value)', 'quartile') }} as national_median,
        {{ disclose('percentile_cont(0.75) within group (order by value)', 'count(value)', 'quartile') }} as national_p75
    from programme_values
    group by year, quarter, metric
),

ranked as (
    -- 1 = the highest value of the quarter; equal values share the lower rank
    select
        programme_values.*,
        case when value is not null then
            rank() over (partition by year, quarter, metric, value is null order by value desc)
        end as rank
    from programme_values
),

final as (
    select
        -- keys
        ranked.program_id,
        ranked.year,
        ranked.quarter,
        ranked.period_start,
        ranked.period_code,
        ranked.period_label,
        ranked.metric,
        catalogue.label_nl as metric_label,

        -- the programme beside the nation, under the disclosure rule
        ranked.value,
        case when not spread.is_suppressed then national_values.national_value end as national_value,
        spread.national_p25,
        spread.national_median,
        spread.national_p75,
        cast(spread.n_programs as {{ dbt.type_bigint() }}) as n_programs,
        cast(ranked.rank as {{ dbt.type_bigint() }}) as rank,
        spread.is_suppressed as national_suppressed,

        -- the published threshold band the value falls in, where one applies
        benchmarks.band as benchmark_band,
        benchmarks.label_nl as benchmark_band_label
    from ranked
    inner join spread
        on spread.year = ranked.year
        and spread.quarter = ranked.quarter
        and spread.metric = ranked.metric
    inner join national_values
        on national_values.year = ranked.year
        and national_values.quarter = ranked.quarter
        and national_values.metric = ranked.metric
    left join catalogue
        on catalogue.metric = ranked.metric
    left join benchmarks
        on benchmarks.metric = ranked.metric
        and (ranked.value > benchmarks.lower_bound or (benchmarks.lower_inclusive and ranked.value = benchmarks.lower_bound))
        and (benchmarks.upper_bound is null or ranked.value < benchmarks.upper_bound)
)

select * from final
