{#- One row per deregistration (provider, client, end date): the version of the export received last (the highest
    load_id, then source_row). Incremental: a nightly full export stores its changed rows only, and only the keys it
    changed are ranked again, not every stored deregistration (2,000,000 of them: 7 s a night, now a fraction of it).

    Which keys a build looks at again:
    - keys with a version stored since the last build (a load_id above the highest here), whose new version wins;
    - keys whose version here came from a file retracted since (its load_id is no longer in raw): the version left
      wins, and a key with no version left is deleted by the post-hook.
    A key's versions are only ever added (a later file) or taken away (a retraction), so nothing else can change
    which version wins. A change to this model's logic needs a full build (`dbt build --full-refresh`, or
    `care-outcomes refresh --rebuild`). -#}
{{ config(
    materialized='incremental',
    unique_key=['provider', 'client_pseudonym', 'end_date'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="delete from {{ this }} where load_id not in (select load_id from {{ ref('stg_outflow__deregistrations') }})"
) }}

with

deregistrations as (
    select * from {{ ref('stg_outflow__deregistrations') }}
),

{% if is_incremental() %}

changed_keys as (
    select provider, client_pseudonym, end_date
    from deregistrations
    where load_id > (select coalesce(max(load_id), 0) from {{ this }})
    union
    select provider, client_pseudonym, end_date
    from {{ this }}
    where load_id not in (select load_id from deregistrations)
),

candidates as (
    select deregistrations.*
    from deregistrations
    inner join changed_keys
        on changed_keys.provider = deregistrations.provider
        and changed_keys.client_pseudonym = deregistrations.client_pseudonym
        and changed_keys.end_date = deregistrations.end_date
),

{% else %}

candidates as (
    select * from deregistrations
),

{% endif %}

ranked as (
    select
        candidates.*,
        row_number() over (
            partition by provider, client_pseudonym, end_date
            order by load_id desc, source_row desc
        ) as version_rank
    from candidates
),

final as (
    select
        client_pseudonym,
        provider,
        location,
        start_date,
        end_date,
        trajectory_days,
        destination,
        ladder_step_start,
        ladder_step_end,
        load_id,
        source_row
    from ranked
    where version_rank = 1
)

select * from final
