{#- Which programme sent which quarter: from each programme's first reported quarter to the latest
    quarter any programme reported, so a quarter that never came shows as missing. -#}
with recursive

latest as (
    select * from {{ ref('int_ips_quarterly_latest') }}
),

bounds as (
    select program_id, min(quarter_index) as first_index, (select max(quarter_index) from latest) as last_index
    from latest
    group by program_id
),

expected (program_id, quarter_index, last_index) as (
    select program_id, first_index, last_index from bounds
    union all
    select program_id, quarter_index + 1, last_index from expected where quarter_index < last_index
),

quarters as (
    -- quarter_index = 4 * year + quarter - 1
    select
        program_id,
        quarter_index,
        cast(floor(quarter_index / 4.0) as {{ dbt.type_int() }}) as year,
        cast(quarter_index - 4 * floor(quarter_index / 4.0) + 1 as {{ dbt.type_int() }}) as quarter
    from expected
),

final as (
    select
        -- keys
        expected.program_id,
        expected.year,
        expected.quarter,
        {{ quarter_periods('expected.year', 'expected.quarter') }},

        -- status: received once, sent again (resubmitted), or never received
        case
            when latest.program_id is null then 'missing'
            when latest.versions_received > 1 then 'resubmitted'
            else 'received'
        end as status,

        -- the version the marts use
        latest.file_name,
        latest.submitted_at,
        latest.loaded_at as received_at,
        cast(coalesce(latest.versions_received, 0) as {{ dbt.type_bigint() }}) as versions
    from quarters as expected
    left join latest
        on latest.program_id = expected.program_id
        and latest.quarter_index = expected.quarter_index
)

select * from final
