{#- Use the folder's schema name as is (raw, staging, intermediate, marts), not target_schema + '_' + name:
    BI tools query marts.<table>. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
