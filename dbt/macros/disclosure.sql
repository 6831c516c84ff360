{#- The disclosure rule: the one place that says when a national figure may be shown.

    Every mart may be read by a programme (its PostgreSQL login, its feedback report), and a programme
    knows its own figures. So a national figure is shown only where, with the programme's own value
    taken out, what is left still stands for at least var('min_programs_national') other programmes:

    - a mean, a sum or a pooled rate over n programmes ('total'): n - 1 >= min_programs_national
      (with 2 programmes, "national sum minus own" is the other programme's figure);
    - quartiles ('quartile'): also n >= var('min_programs_quartiles') (default 5), because with 3
      programmes p25, median and p75 are the three values, and with 4 they and the mean give all four.

    n is the number of programmes whose value goes into the figure (a NULL value does not count). -#}

{% macro min_programs(kind='total') -%}
    {%- set others = var('min_programs_national') | int -%}
    {%- if kind == 'total' -%}
        {{ return(others + 1) }}
    {%- elif kind == 'quartile' -%}
        {{ return([others + 1, var('min_programs_quartiles') | int] | max) }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("disclosure kind must be 'total' or 'quartile', not " ~ kind) }}
    {%- endif -%}
{%- endmacro %}

{#- BOOLEAN: may a figure over n programmes be shown? -#}
{% macro disclosed(n, kind='total') -%}
    coalesce({{ n }}, 0) >= {{ min_programs(kind) }}
{%- endmacro %}

{#- The figure where it may be shown, else NULL. -#}
{% macro disclose(expression, n, kind='total') -%}
    case when {{ disclosed(n, kind) }} then {{ expression }} end
{%- endmacro %}
