{#- The participation ladder as a transition matrix: where participants stood when they started and
    when they left, every step pair 1..6 present per provider-year (0 where none). -#}
with

deregistrations as (
    select * from {{ ref('int_outflow_deregistrations') }}
),

steps as (
    -- the six steps of the ladder, with their labels
    select ladder_step as step, label_nl from {{ ref('ladder_steps') }}
),

provider_years as (
    -- only rows with both steps known count, as in outflow_ladder
    select provider, year, count(*) as n_with_steps
    from deregistrations
    where ladder_step_start is not null and ladder_step_end is not null
    group by provider, year
),

counts as (
    select provider, year, ladder_step_start as step_start, ladder_step_end as step_end, count(*) as n
    from deregistrations
    where ladder_step_start is not null and ladder_step_end is not null
    group by provider, year, ladder_step_start, ladder_step_end
),

final as (
    select
        -- keys
        provider_years.provider,
        provider_years.year,
        {{ year_periods('provider_years.year') }},
        cast(step_start.step as {{ dbt.type_int() }}) as step_start,
        cast(step_end.step as {{ dbt.type_int() }}) as step_end,
        step_start.label_nl as step_start_label,
        step_end.label_nl as step_end_label,

        -- participants who moved from step_start to step_end, and their share of the provider-year
        cast(coalesce(counts.n, 0) as {{ dbt.type_bigint() }}) as n,
        {{ safe_divide('coalesce(counts.n, 0)', 'provider_years.n_with_steps') }} as share
    from provider_years
    cross join steps as step_start
    cross join steps as step_end
    left join counts
        on counts.provider = provider_years.provider
        and counts.year = provider_years.year
        and counts.step_start = step_start.step
        and counts.step_end = step_end.step
)

select * from final
