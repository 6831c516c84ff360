{#- A table, not a view like the other intermediate models: five marts and a key test read it, and as a view each
    of them would rank every stored deregistration again (at national scale, 10 million rows, 8-12 s each). -#}
{{ config(materialized='table') }}

{#- Care systems often re-export overlapping periods: one row per provider, client and end date,
    from the export received last. -#}
with

deregistrations as (
    select * from {{ ref('stg_outflow__deregistrations') }}
),

destinations as (
    select * from {{ ref('destinations') }}
),

latest as (
    select
        deregistrations.*,
        row_number() over (
            partition by provider, client_pseudonym, end_date
            order by load_id desc, source_row desc
        ) as version_rank
    from deregistrations
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
    where latest.version_rank = 1
)

select * from final
