with

source as (
    select * from {{ source('raw', 'outflow') }}
),

renamed as (
    select
        -- keys
        client_id as client_pseudonym,
        provider,
        coalesce(location, '(onbekend)') as location,
        start_date,
        end_date,

        -- outcome
        destination,
        cast(ladder_step_start as {{ dbt.type_int() }}) as ladder_step_start,
        cast(ladder_step_end as {{ dbt.type_int() }}) as ladder_step_end,
        {{ dbt.datediff('start_date', 'end_date', 'day') }} as trajectory_days,

        -- lineage
        _load_id as load_id,
        _source_row as source_row,
        _file_name as file_name
    from source
)

select * from renamed
