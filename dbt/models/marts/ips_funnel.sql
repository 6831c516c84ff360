{#- Funnel plots (Spiegelhalter, Stat Med 2005): each programme's rate against its denominator, the caseload,
    with control limits around the pooled national rate that narrow as the denominator grows. The national
    rate and the limits follow the disclosure rule (macros/disclosure.sql). -#}
{%- set metrics = ips_funnel_metrics() -%}
{%- set z95, z998 = 1.959964, 3.090232 -%}

with

quarterly as (
    select * from {{ ref('ips_quarterly') }}
),

catalogue as (
    select * from {{ ref('metrics') }}
),

counts as (
    -- numerator and denominator of every funnel metric, per programme and quarter
    {%- for metric, numerator in metrics.items() %}
    select
        program_id, program_name, year, quarter, period_start, period_code, period_label,
        '{{ metric }}' as metric,
        cast({{ numerator }} as {{ dbt.type_bigint() }}) as numerator,
        cast(caseload as {{ dbt.type_bigint() }}) as denominator
    from quarterly
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

quarters as (
    select
        program_id, program_name, 'quarter' as period_type, period_code, period_label, period_start,
        metric, numerator, denominator
    from counts
),

years as (
    -- a year: the summed numerators and denominators of its reported quarters
    select
        program_id,
        max(program_name) as program_name,
        'year' as period_type,
        cast(year as {{ dbt.type_string() }}) as period_code,
        cast(year as {{ dbt.type_string() }}) as period_label,
        {{ year_start('year') }} as period_start,
        metric,
        cast(sum(numerator) as {{ dbt.type_bigint() }}) as numerator,
        cast(sum(denominator) as {{ dbt.type_bigint() }}) as denominator
    from counts
    group by program_id, year, metric
),

periods as (
    -- a rate needs a denominator
    select * from quarters where denominator > 0 and numerator is not null
    union all
    select * from years where denominator > 0 and numerator is not null
),

national as (
    -- pooled: the sum of the numerators over the sum of the denominators of the period's programmes
    select
        period_code,
        metric,
        count(*) as n_programs,
        {{ disclose(safe_divide('sum(numerator)', 'sum(denominator)'), 'count(*)') }} as national_rate
    from periods
    group by period_code, metric
),

limits as (
    select
        periods.*,
        {{ safe_divide('periods.numerator', 'periods.denominator') }} as rate,
        national.national_rate,
        national.n_programs,
        {%- for name, z, sign in [('lower_95', z95, '-'), ('upper_95', z95, '+'), ('lower_998', z998, '-'), ('upper_998', z998, '+')] %}
        -- national_rate {{ sign }} z * sqrt(national_rate * (1 - national_rate) / denominator), clipped to [0, 1]
        case when national.national_rate is not null then greatest(0.0, least(1.0, national.national_rate
            {{ sign }} {{ z }} * sqrt(national.national_rate * (1 - national.national_rate) / periods.denominator)
        )) end as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from periods
    inner join national
        on national.period_code = periods.period_code
        and national.metric = periods.metric
),

final as (
    select
        -- keys
        limits.program_id,
        limits.program_name,
        limits.period_code,
        limits.period_type,
        limits.period_start,
        limits.period_label,
        limits.metric,
        catalogue.label_nl as metric_label,

        -- the programme
        limits.numerator,
        limits.denominator,
        limits.rate,

        -- the nation and the control limits (NULL where the disclosure rule withholds the national rate)
        limits.national_rate,
        limits.lower_95,
        limits.upper_95,
        limits.lower_998,
        limits.upper_998,
        case
            when limits.national_rate is null then null
            when limits.rate > limits.upper_998 then 'above_998'
            when limits.rate > limits.upper_95 then 'above_95'
            when limits.rate < limits.lower_998 then 'below_998'
            when limits.rate < limits.lower_95 then 'below_95'
            else 'within'
        end as signal,
        cast(limits.n_programs as {{ dbt.type_bigint() }}) as n_programs,
        -- the other programmes' dots, unnamed, in a programme's report: they are the others' values themselves, so
        -- they need as many programmes as the quartiles do (the disclosure rule)
        {{ disclosed('limits.n_programs', 'quartile') }} as dots_disclosed
    from limits
    left join catalogue
        on catalogue.metric = limits.metric
)

select * from final
