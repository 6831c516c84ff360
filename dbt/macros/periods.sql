{#- Period columns for BI tools: a date to put on an axis, a code to sort and filter by, and the label
    the IPS feedback report prints. -#}

{#- The first day of a month; dispatched because engines build dates differently. -#}
{% macro date_from_parts(year, month) -%}
    {{ return(adapter.dispatch('date_from_parts', 'care_outcomes')(year, month)) }}
{%- endmacro %}

{% macro default__date_from_parts(year, month) -%}
    make_date(cast({{ year }} as integer), cast({{ month }} as integer), 1)
{%- endmacro %}

{#- DATE: the first day of the quarter (2018 Q2 -> 2018-04-01). -#}
{% macro quarter_start(year, quarter) -%}
    {{ date_from_parts(year, '3 * (' ~ quarter ~ ') - 2') }}
{%- endmacro %}

{#- DATE: the first day of the year. -#}
{% macro year_start(year) -%}
    {{ date_from_parts(year, 1) }}
{%- endmacro %}

{#- '2018-K2' (K for kwartaal): sorts as text in time order. -#}
{% macro period_code(year, quarter) -%}
    cast({{ year }} as {{ dbt.type_string() }}) || '-K' || cast({{ quarter }} as {{ dbt.type_string() }})
{%- endmacro %}

{#- 'apr-juni 2018': as the IPS feedback report writes the quarter. -#}
{% macro period_label(year, quarter) -%}
    case {{ quarter }} when 1 then 'jan-mrt' when 2 then 'apr-juni' when 3 then 'juli-sept' when 4 then 'okt-dec' end
        || ' ' || cast({{ year }} as {{ dbt.type_string() }})
{%- endmacro %}

{#- The three period columns of a quarterly mart. -#}
{% macro quarter_periods(year, quarter) -%}
        {{ quarter_start(year, quarter) }} as period_start,
        {{ period_code(year, quarter) }} as period_code,
        {{ period_label(year, quarter) }} as period_label
{%- endmacro %}

{#- The three period columns of a yearly mart: the year as code and as label ('2018'), so every
    period mart has period_start, period_code and period_label. -#}
{% macro year_periods(year) -%}
        {{ year_start(year) }} as period_start,
        cast({{ year }} as {{ dbt.type_string() }}) as period_code,
        cast({{ year }} as {{ dbt.type_string() }}) as period_label
{%- endmacro %}
