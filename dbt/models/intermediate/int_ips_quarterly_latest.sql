{#- A resubmission supersedes: per programme-quarter the row with the latest submitted_at wins;
    without submitted_at, the row of the file received later (higher load_id). -#}
with

submissions as (
    select * from {{ ref('stg_ips__quarterly_submissions') }}
),

ranked as (
    select
        submissions.*,
        row_number() over (
            partition by program_id, year, quarter
            order by submitted_at desc nulls last, load_id desc, source_row desc
        ) as version_rank,
        count(*) over (partition by program_id, year, quarter) as versions_received
    from submissions
),

final as (
    select * from ranked where version_rank = 1
)

select * from final
