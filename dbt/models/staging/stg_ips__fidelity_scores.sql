with

source as (
    select * from {{ source('raw', 'ips_fidelity') }}
),

renamed as (
    select
        -- keys
        program_id,
        assessment_date,
        item_code,

        -- scores, 1..5; NULL = not applicable (n.v.t.)
        cast(score_ips_a as {{ dbt.type_int() }}) as score_ips_a,
        cast(score_ips_o as {{ dbt.type_int() }}) as score_ips_o,

        -- lineage
        _load_id as load_id,
        _file_name as file_name
    from source
)

select * from renamed
