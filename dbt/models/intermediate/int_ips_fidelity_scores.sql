{#- An assessment sent again replaces the earlier version as a whole: per programme and assessment
    date, only the items of the file received last count. -#}
with

scores as (
    select * from {{ ref('stg_ips__fidelity_scores') }}
),

items as (
    select * from {{ ref('fidelity_item_catalogue') }}
),

latest_file as (
    select program_id, assessment_date, max(load_id) as load_id
    from scores
    group by program_id, assessment_date
),

latest_assessment as (
    select program_id, max(assessment_date) as assessment_date
    from scores
    group by program_id
),

final as (
    select
        scores.program_id,
        scores.assessment_date,
        scores.item_code,
        items.section,
        items.item_number,
        items.item_label,
        items.sort_order,
        scores.score_ips_a,
        scores.score_ips_o,
        latest_assessment.assessment_date is not null as is_latest_assessment
    from scores
    inner join latest_file
        on latest_file.program_id = scores.program_id
        and latest_file.assessment_date = scores.assessment_date
        and latest_file.load_id = scores.load_id
    inner join items
        on items.item_code = scores.item_code
    left join latest_assessment
        on latest_assessment.program_id = scores.program_id
        and latest_assessment.assessment_date = scores.assessment_date
)

select * from final
