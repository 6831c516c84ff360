with

deregistrations as (
    select * from {{ ref('int_outflow_deregistrations') }}
),

destination_groups as (
    select * from {{ ref('destination_groups') }}
),

location_years as (
    select provider, year, location, count(*) as location_outflow
    from deregistrations
    group by provider, year, location
),

counts as (
    select provider, year, location, destination_group, count(*) as outflow_count
    from deregistrations
    group by provider, year, location, destination_group
),

final as (
    -- every destination group for every location that had outflow in the year, 0 where none
    select
        location_years.provider,
        location_years.year,
        {{ year_periods('location_years.year') }},
        location_years.location,
        destination_groups.destination_group,
        destination_groups.label_nl as destination_group_label,
        location_years.location_outflow,
        coalesce(counts.outflow_count, 0) as outflow_count,
        {{ safe_divide('coalesce(counts.outflow_count, 0)', 'location_years.location_outflow') }} as outflow_share
    from location_years
    cross join destination_groups
    left join counts
        on counts.provider = location_years.provider
        and counts.year = location_years.year
        and counts.location = location_years.location
        and counts.destination_group = destination_groups.destination_group
)

select * from final
