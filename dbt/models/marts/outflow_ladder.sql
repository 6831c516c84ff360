with

deregistrations as (
    select * from {{ ref('int_outflow_deregistrations') }}
),

provider_years as (
    select distinct provider, year from deregistrations
),

with_steps as (
    select
        provider,
        year,
        count(*) as n_with_steps,
        sum(case when ladder_step_end > ladder_step_start then 1 else 0 end) as moved_up,
        sum(case when ladder_step_end = ladder_step_start then 1 else 0 end) as stable,
        sum(case when ladder_step_end < ladder_step_start then 1 else 0 end) as moved_down
    from deregistrations
    where ladder_step_start is not null and ladder_step_end is not null
    group by provider, year
),

final as (
    select
        provider_years.provider,
        provider_years.year,
        {{ year_periods('provider_years.year') }},
        cast(coalesce(with_steps.n_with_steps, 0) as {{ dbt.type_bigint() }}) as n_with_steps,
        {{ safe_divide('with_steps.moved_up', 'with_steps.n_with_steps') }} as moved_up_share,
        {{ safe_divide('with_steps.stable', 'with_steps.n_with_steps') }} as stable_share,
        {{ safe_divide('with_steps.moved_down', 'with_steps.n_with_steps') }} as moved_down_share
    from provider_years
    left join with_steps
        on with_steps.provider = provider_years.provider
        and with_steps.year = provider_years.year
)

select * from final
