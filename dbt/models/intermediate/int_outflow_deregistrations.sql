{#- A view over the incremental table int_outflow_latest_versions, where the deregistrations are ranked once: the
    five marts read it without ranking every stored deregistration again. -#}

{#- Care systems often re-export overlapping periods: one row per provider, client and end date,
    from the export received last. -#}
with

latest as (
    select * from {{ ref('int_outflow_latest_versions') }}
),

destinations as (
    select * from {{ ref('destinations') }}
),

final as (
    select
        latest.client_pseudonym,
        latest.provider,
        latest.location,
        cast({{ extract_year('latest.end_date') }} as {{ dbt.type_int() }}) as year,
        latest.start_date,
        latest.end_date,
        latest.trajectory_days,
        latest.destination,
        destinations.destination_group,
        destinations.ladder_step,
        latest.ladder_step_start,
        latest.ladder_step_end
    from latest
    inner join destinations
        on destinations.destination = latest.destination
)

select * from final
