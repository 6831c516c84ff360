with

deregistrations as (
    select * from {{ ref('int_outflow_deregistrations') }}
),

destinations as (
    select * from {{ ref('destinations') }}
),

destination_groups as (
    select * from {{ ref('destination_groups') }}
),

ladder_steps as (
    select * from {{ ref('ladder_steps') }}
),

provider_years as (
    select provider, year, count(*) as total_outflow
    from deregistrations
    group by provider, year
),

counts as (
    select provider, year, destination, count(*) as outflow_count
    from deregistrations
    group by provider, year, destination
),

final as (
    -- every canonical destination for every provider-year, 0 where nobody went there
    select
        -- keys
        provider_years.provider,
        provider_years.year,
        {{ year_periods('provider_years.year') }},
        destinations.destination,
        destinations.label_nl as destination_label,
        destinations.sort_order,
        destinations.destination_group,
        destination_groups.label_nl as destination_group_label,
        destinations.ladder_step,
        ladder_steps.label_nl as ladder_step_label,

        -- counts and shares
        coalesce(counts.outflow_count, 0) as outflow_count,
        {{ safe_divide('coalesce(counts.outflow_count, 0)', 'provider_years.total_outflow') }} as outflow_share
    from provider_years
    cross join destinations
    inner join destination_groups
        on destination_groups.destination_group = destinations.destination_group
    left join ladder_steps
        on ladder_steps.ladder_step = destinations.ladder_step
    left join counts
        on counts.provider = provider_years.provider
        and counts.year = provider_years.year
        and counts.destination = destinations.destination
)

select * from final
