with

source as (
    select * from {{ source('raw', 'ips_quarterly') }}
),

renamed as (
    select
        -- keys
        cast(program_id as {{ dbt.type_string() }}) as program_id,
        cast(year as {{ dbt.type_int() }}) as year,
        cast(quarter as {{ dbt.type_int() }}) as quarter,
        cast(year as {{ dbt.type_int() }}) * 4 + cast(quarter as {{ dbt.type_int() }}) - 1 as quarter_index,
        program_name,

        -- counts
        cast(caseload as {{ dbt.type_int() }}) as caseload,
        cast(new_clients as {{ dbt.type_int() }}) as new_clients,
        cast(fte as {{ type_double() }}) as fte,
        cast(paid_work as {{ dbt.type_int() }}) as paid_work,
        cast(paid_work_uwv as {{ dbt.type_int() }}) as paid_work_uwv,
        cast(education as {{ dbt.type_int() }}) as education,
        cast(outflow_successful as {{ dbt.type_int() }}) as outflow_successful,
        cast(outflow_unsuccessful as {{ dbt.type_int() }}) as outflow_unsuccessful,

        -- lineage
        submitted_at,
        _load_id as load_id,
        _source_row as source_row,
        _file_name as file_name,
        _loaded_at as loaded_at
    from source
)

select * from renamed
