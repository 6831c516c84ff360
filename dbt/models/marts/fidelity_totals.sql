with

scores as (
    select * from {{ ref('int_ips_fidelity_scores') }}
),

summed as (
    select
        program_id,
        assessment_date,
        max(case when is_latest_assessment then 1 else 0 end) = 1 as is_latest_assessment,
        sum(score_ips_a) as total_ips_a,
        sum(score_ips_o) as total_ips_o,
        5 * count(score_ips_a) as max_ips_a,
        5 * count(score_ips_o) as max_ips_o
    from scores
    group by program_id, assessment_date
),

final as (
    select
        -- keys
        program_id,
        assessment_date,

        -- totals: NULL when no item of the scale was scored
        cast(total_ips_a as {{ dbt.type_bigint() }}) as total_ips_a,
        cast(total_ips_o as {{ dbt.type_bigint() }}) as total_ips_o,
        cast(case when max_ips_a > 0 then max_ips_a end as {{ dbt.type_bigint() }}) as max_ips_a,
        cast(case when max_ips_o > 0 then max_ips_o end as {{ dbt.type_bigint() }}) as max_ips_o,

        -- bands
        {{ fidelity_band('total_ips_a', 'max_ips_a') }} as band_ips_a,
        {{ fidelity_band('total_ips_o', 'max_ips_o') }} as band_ips_o,

        is_latest_assessment
    from summed
)

select * from final
