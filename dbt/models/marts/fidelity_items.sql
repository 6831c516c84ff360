with

scores as (
    select * from {{ ref('int_ips_fidelity_scores') }}
),

national as (
    -- per item, the mean over every programme's latest assessment (not applicable = NULL, ignored),
    -- under the disclosure rule (macros/disclosure.sql) with the programmes that scored the item
    select
        item_code,
        {{ disclose(mean("score_ips_a"), "count(score_ips_a)") }} as national_mean_ips_a,
        {{ disclose(mean("score_ips_o"), "count(score_ips_o)") }} as national_mean_ips_o
    from scores
    where is_latest_assessment
    group by item_code
),

final as (
    select
        -- keys
        scores.program_id,
        scores.assessment_date,
        scores.item_code,

        -- the item
        scores.section,
        scores.item_number,
        scores.item_label,
        scores.sort_order,

        -- scores beside the national means
        scores.score_ips_a,
        scores.score_ips_o,
        cast(national.national_mean_ips_a as {{ type_double() }}) as national_mean_ips_a,
        cast(national.national_mean_ips_o as {{ type_double() }}) as national_mean_ips_o,
        scores.is_latest_assessment
    from scores
    left join national
        on national.item_code = scores.item_code
)

select * from final
