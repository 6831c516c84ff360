{#- The year of a date; dispatched because engines spell it differently. -#}
{% macro extract_year(date_expr) -%}
    {{ return(adapter.dispatch('extract_year', 'care_outcomes')(date_expr)) }}
{%- endmacro %}

{% macro default__extract_year(date_expr) -%}extract(year from {{ date_expr }}){%- endmacro %}
