with

scores as (
    select * from {{ ref('int_ips_fidelity_scores') }}
),

bands as (
    select * from {{ ref('fidelity_bands') }}
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

national as (
    -- the mean totals over every programme's latest assessment, under the disclosure rule (macros/disclosure.sql)
    select
        {{ disclose(mean('total_ips_a'), 'count(total_ips_a)') }} as national_mean_total_ips_a,
        {{ disclose(mean('total_ips_o'), 'count(total_ips_o)') }} as national_mean_total_ips_o
    from summed
    where is_latest_assessment
),

with_bands as (
    select
        summed.*,
        {{ fidelity_band('total_ips_a', 'max_ips_a') }} as band_ips_a,
        {{ fidelity_band('total_ips_o', 'max_ips_o') }} as band_ips_o
    from summed
),

final as (
    select
        -- keys
        with_bands.program_id,
        with_bands.assessment_date,

        -- totals: NULL when no item of the scale was scored
        cast(with_bands.total_ips_a as {{ dbt.type_bigint() }}) as total_ips_a,
        cast(with_bands.total_ips_o as {{ dbt.type_bigint() }}) as total_ips_o,
        cast(case when with_bands.max_ips_a > 0 then with_bands.max_ips_a end as {{ dbt.type_bigint() }}) as max_ips_a,
        cast(case when with_bands.max_ips_o > 0 then with_bands.max_ips_o end as {{ dbt.type_bigint() }}) as max_ips_o,

        -- bands, with their Dutch labels
        with_bands.band_ips_a,
        with_bands.band_ips_o,
        band_a.label_nl as band_ips_a_label,
        band_o.label_nl as band_ips_o_label,

        with_bands.is_latest_assessment,

        -- the national mean totals beside the programme's (the same for every row)
        cast(national.national_mean_total_ips_a as {{ type_double() }}) as national_mean_total_ips_a,
        cast(national.national_mean_total_ips_o as {{ type_double() }}) as national_mean_total_ips_o
    from with_bands
    cross join national
    left join bands as band_a
        on band_a.band = with_bands.band_ips_a
    left join bands as band_o
        on band_o.band = with_bands.band_ips_o
)

select * from final
