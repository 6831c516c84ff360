{#- Double precision everywhere a ratio is computed: dbt.type_float() is 4-byte FLOAT on DuckDB,
    which turns 0.015 into 0.015000001. Dispatched so another engine can name its own type. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'care_outcomes')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}

{% macro bigquery__type_double() -%}float64{%- endmacro %}
